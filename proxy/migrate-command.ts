/**
 * The `pgveil migrate` command: options, connection with pgveil's own credentials,
 * and the report (stdout: the plan or the `{migrated, left}` counts; stderr:
 * progress and problems). The work itself is proxy/migrate.ts.
 */
import { REINDEX_MODE } from '../policy/envelope-rewrite.js'
import type { PgveilConfig } from './config.js'
import { formatOutcomes, formatPlan, migrateDatabase, MigrationError, outcomesJson } from './migrate.js'
import { connectAsPgveil, OwnConnectionError } from './own-connection.js'
import { describeUpstream } from './upstream-url.js'
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-status.js'

const DEFAULT_BATCH_SIZE = 1000
const MAX_BATCH_SIZE = 100_000
const DEFAULT_LOCK_TIMEOUT_S = 5

export const MIGRATE_HELP = `Usage: pgveil migrate [--config FILE] [--dry-run] [--reindex] [--json] [--batch-size N] [--lock-timeout SECONDS]

Brings the stored data of every protected column (tables: in the configuration)
in line with the configuration, connecting with the credentials of upstream.url:
- values sealed under a key version other than keys.current are re-encrypted
  under the current one (every key version they use must be in keys.versions);
- a protected column that is not bytea yet (existing plaintext) is converted:
  renamed to COLUMN__pgveil_plain, a new bytea COLUMN added with a trigger that
  keeps concurrent writes through pgveil consistent, the plaintext encrypted in
  batches, then the plaintext column dropped (see the README for the details).

Work is done in batches, one transaction each; an interrupted run is resumed by
running it again, and a finished run does nothing. Progress goes to stderr; the
result, per column "migrated N, left M", to stdout.

Options:
  -c, --config FILE       configuration file (default: $PGVEIL_CONFIG, else
                          ./pgveil.yaml, else config.example.yaml)
  -n, --dry-run           print the plan (states, counts, the DDL it would run)
                          and change nothing
      --reindex           also rewrite the index values of searchable columns
                          (search: equality) made under an index key version
                          other than keys.index.current, so the old one can go
      --json              print the result (or the plan) as one JSON object
      --batch-size N      rows per batch/transaction (default ${DEFAULT_BATCH_SIZE})
      --lock-timeout S    how long each table lock is waited for before a retry
                          (default ${DEFAULT_LOCK_TIMEOUT_S} s; 5 attempts)
  -h, --help              show this help

Exit status: 0 nothing is left to migrate; 1 something is left (unreadable
values, a column that cannot be converted, a failure: see stderr); 2 a usage or
configuration error.
`

export const MIGRATE_OPTIONS = {
  'dry-run': { type: 'boolean', short: 'n' },
  reindex: { type: 'boolean' },
  json: { type: 'boolean' },
  'batch-size': { type: 'string' },
  'lock-timeout': { type: 'string' },
} as const

export interface MigrateFlags {
  'dry-run'?: boolean
  reindex?: boolean
  json?: boolean
  'batch-size'?: string
  'lock-timeout'?: string
}

function positiveNumber(text: string | undefined, fallback: number, name: string, integer: boolean, max: number): number | string {
  if (text === undefined) return fallback
  const value = Number(text)
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0 || value > max || (integer && !Number.isInteger(value))) {
    return `--${name} must be ${integer ? 'an integer' : 'a number'} greater than 0 and at most ${max} (got "${text}")`
  }
  return value
}

export async function runMigrateCommand(config: PgveilConfig, flags: MigrateFlags): Promise<number> {
  const batchSize = positiveNumber(flags['batch-size'], DEFAULT_BATCH_SIZE, 'batch-size', true, MAX_BATCH_SIZE)
  const lockTimeout = positiveNumber(flags['lock-timeout'], DEFAULT_LOCK_TIMEOUT_S, 'lock-timeout', false, 3600)
  for (const problem of [batchSize, lockTimeout]) {
    if (typeof problem === 'string') {
      process.stderr.write(`pgveil migrate: ${problem}\n`)
      return EXIT_USAGE
    }
  }
  const target = config.upstream.target
  if (target === null) {
    process.stderr.write('pgveil migrate: no upstream.url configured: set it (or PGVEIL_UPSTREAM__URL) to the database to migrate\n')
    return EXIT_USAGE
  }
  if (config.policy.isEmpty || config.keyring === null) {
    process.stdout.write(flags.json === true ? `${JSON.stringify({ dryRun: flags['dry-run'] === true, columns: {} })}\n` : 'pgveil migrate: no protected columns in the configuration (tables:): nothing to migrate\n')
    return EXIT_OK
  }
  let connection
  try {
    connection = await connectAsPgveil(target, { timeoutMs: config.upstream.connectTimeoutMs, applicationName: 'pgveil migrate' })
  } catch (error) {
    const reason = error instanceof OwnConnectionError ? error.message : (error as Error).message
    process.stderr.write(`pgveil migrate: upstream ${describeUpstream(target)}: ${reason}\n`)
    return EXIT_FAILURE
  }
  const { client } = connection
  try {
    const run = await migrateDatabase(client, config.policy, config.keyring, {
      dryRun: flags['dry-run'] === true,
      ...(flags.reindex === true ? { mode: REINDEX_MODE } : {}),
      batchSize: batchSize as number,
      lockTimeoutMs: (lockTimeout as number) * 1000,
      progress: (line) => process.stderr.write(`${line}\n`),
    })
    if (flags.json === true) process.stdout.write(outcomesJson(run))
    else process.stdout.write(run.dryRun ? formatPlan(run.plans) : formatOutcomes(run.outcomes))
    for (const outcome of run.outcomes) if (outcome.error !== undefined) process.stderr.write(`pgveil migrate: ${outcome.error}\n`)
    if (run.dryRun) return EXIT_OK
    return run.outcomes.every((o) => o.left === 0 && o.error === undefined) ? EXIT_OK : EXIT_FAILURE
  } catch (error) {
    process.stderr.write(`pgveil migrate: ${error instanceof MigrationError ? error.message : `failed: ${(error as Error).message}`}\n`)
    return EXIT_FAILURE
  } finally {
    await client.end().catch(() => {})
  }
}
