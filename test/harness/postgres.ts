/**
 * The PostgreSQL test harness (DESIGN decision 11). The implementation lives in
 * `bench/postgres-server.ts` because the benchmark runner, compiled into `dist/`,
 * starts the same server; suites normally use the one shared server through
 * `test/harness/pg.ts` rather than starting their own.
 */
import { startPostgresServer, type PostgresServer, type StartPostgresOptions } from '../../bench/postgres-server.js'

export {
  createDatabaseOn,
  postgresUrl,
  readPostgresLog,
  withServerMethods,
  serverInfo,
  type ExternalPostgresInfo,
  type ManagedPostgresInfo,
  type PostgresKind,
  type PostgresRole,
  type PostgresRoles,
  type PostgresServerInfo as TestPostgresInfo,
  type PostgresTlsFiles,
  type StartPostgresOptions,
} from '../../bench/postgres-server.js'

export type TestPostgres = PostgresServer

/** Starts (or connects to) a real PostgreSQL; prints one line to stderr saying which. */
export function startTestPostgres(options?: StartPostgresOptions): Promise<TestPostgres> {
  return startPostgresServer(options)
}
