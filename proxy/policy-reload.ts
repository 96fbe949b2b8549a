/**
 * Hot reload of the column policy: on SIGHUP and whenever the configuration file
 * changes, the file is loaded and validated again. A valid file's `tables` and
 * `keys` are applied; an invalid one is refused with its problems logged, and the
 * running policy stays. Other settings (listen, upstream, …) need a restart.
 */
import { watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import { ConfigError, loadConfig, withUpstreamUrl, type PgveilConfig } from './config.js'
import type { Logger } from './log.js'
import type { ProxyServer } from './server.js'

/** Changes within this window are read once (editors write files in several steps). */
const SETTLE_MS = 150

export interface PolicyReloader {
  /** Load the file again now (what SIGHUP does). */
  reload(trigger: string): Promise<void>
  stop(): void
}

export function watchPolicy(server: ProxyServer, running: PgveilConfig, logger: Logger): PolicyReloader {
  const file = running.source === 'defaults' ? null : running.source
  let timer: NodeJS.Timeout | null = null
  let chain = Promise.resolve()

  const reloadOnce = async (trigger: string): Promise<void> => {
    let next: PgveilConfig
    try {
      next = await loadConfig(file === null ? {} : { file })
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems : [(error as Error).message]
      logger.error('policy reload refused: the configuration is invalid; the running policy stays', { trigger, problems })
      server.metrics.policyReloadsTotal.inc({ outcome: 'refused' })
      server.audit?.write({ event: 'policy_refused', trigger, problems: problems.length })
      return
    }
    // The upstream URL of an embedded PostgreSQL is not in the file.
    if (running.upstream.url !== null && next.upstream.url === null) next = withUpstreamUrl(next, running.upstream.url)
    if (JSON.stringify([next.listen, next.upstream.url, next.mode]) !== JSON.stringify([running.listen, running.upstream.url, running.mode])) {
      logger.warn('configuration changed outside tables/keys: restart pgveil to apply those settings', { trigger })
    }
    try {
      const applied = await server.applyPolicy(next)
      logger.info(applied ? 'policy reloaded' : 'policy unchanged', { trigger, protectedColumns: next.policy.columns.length })
      server.metrics.policyReloadsTotal.inc({ outcome: applied ? 'applied' : 'unchanged' })
      if (applied) server.audit?.write({ event: 'policy_reloaded', trigger, protected_columns: next.policy.columns.length })
    } catch (error) {
      logger.error('policy reload failed; the running policy stays', { trigger, error: (error as Error).message })
      server.metrics.policyReloadsTotal.inc({ outcome: 'failed' })
      server.audit?.write({ event: 'policy_refused', trigger, problems: 1 })
    }
  }
  const reload = (trigger: string): Promise<void> => (chain = chain.then(() => reloadOnce(trigger)))

  let watcher: FSWatcher | null = null
  if (file !== null) {
    // Watch the directory: editors often replace the file rather than write into it.
    watcher = watch(path.dirname(file), (_event, name) => {
      if (name !== null && name.toString() !== path.basename(file)) return
      if (timer !== null) clearTimeout(timer)
      timer = setTimeout(() => {
        timer = null
        void reload('file changed')
      }, SETTLE_MS)
    })
    watcher.on('error', (error) => logger.warn('cannot watch the configuration file; use SIGHUP to reload', { file, error: error.message }))
    watcher.unref()
  }
  return {
    reload,
    stop() {
      watcher?.close()
      if (timer !== null) clearTimeout(timer)
    },
  }
}
