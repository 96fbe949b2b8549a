/**
 * vitest globalSetup: one PostgreSQL for the whole run. Workers get its plain
 * description through `inject('pg')` (see `test/harness/pg.ts`) and each suite
 * makes its own database on it.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { TestProject } from 'vitest/node'
import { postgresUrl, serverInfo, startTestPostgres, type TestPostgresInfo } from './postgres.js'

declare module 'vitest' {
  export interface ProvidedContext {
    pg: TestPostgresInfo
    /** Prefix of every database `createDatabase()` makes in this run. */
    pgDatabasePrefix: string
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startTestPostgres()
  const info = serverInfo(server)
  const prefix = `pgveil_${randomBytes(3).toString('hex')}`
  project.provide('pg', info)
  project.provide('pgDatabasePrefix', prefix)
  return async () => {
    // A harness-started server vanishes with its directory; an external one keeps
    // what we made, so drop this run's databases there.
    if (info.kind === 'external') await dropRunDatabases(info, prefix).catch((error: unknown) => {
      process.stderr.write(`pgveil test harness: could not drop this run's databases: ${(error as Error).message}\n`)
    })
    await server.stop()
  }
}

async function dropRunDatabases(info: TestPostgresInfo, prefix: string): Promise<void> {
  const client = new pg.Client({ connectionString: postgresUrl(info) })
  await client.connect()
  try {
    const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [`${prefix}_`])
    for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`)
  } finally {
    await client.end()
  }
}
