/**
 * What integration suites import: the run's shared PostgreSQL (started once by
 * `global-setup.ts`) and a database of their own on it.
 *
 *   const pg = getTestPostgres()
 *   const db = await createDatabase('proxy_auth')   // e.g. "pgveil_1a2b3c_proxy_auth_4d5e"
 *   new Client({ connectionString: pg.url(db) })
 *
 * Authentication, TLS and log features need a server the harness configured:
 * guard those suites with `describe.skipIf(!getTestPostgres().configurable)` and
 * read them through `getConfiguredTestPostgres()`.
 */
import { randomBytes } from 'node:crypto'
import { inject } from 'vitest'
import {
  createDatabaseOn,
  withServerMethods,
  type ManagedPostgresInfo,
  type TestPostgresInfo,
} from './postgres.js'

export interface SharedTestPostgresMethods {
  /** A `postgres://` URI; `user` defaults to the superuser, `database` to "postgres". */
  url(database?: string, user?: string, password?: string): string
  /** PostgreSQL's log so far (throws for an external server). */
  readLog(): string
  /** Same as the exported `createDatabase`: a new database with a unique name. */
  createDatabase(name: string): Promise<string>
}

export type SharedTestPostgres = TestPostgresInfo & SharedTestPostgresMethods
export type ConfiguredTestPostgres = ManagedPostgresInfo & SharedTestPostgresMethods

export function getTestPostgres(): SharedTestPostgres {
  return { ...withServerMethods(inject('pg')), createDatabase }
}

/** The shared server when the harness started and configured it (roles, TLS, log); throws for an external one. */
export function getConfiguredTestPostgres(): ConfiguredTestPostgres {
  const server = getTestPostgres()
  if (!server.configurable) {
    throw new Error('this test needs a PostgreSQL the harness configured (roles, TLS, log); PGVEIL_TEST_DATABASE_URL points at an external server')
  }
  return server
}

/**
 * CREATE DATABASE as the superuser under a unique name derived from `name`
 * (lower-cased, [a-z0-9_]); returns the name to connect to.
 */
export async function createDatabase(name: string): Promise<string> {
  const base = name.toLowerCase().replace(/[^a-z0-9_]+/g, '_').slice(0, 40)
  const unique = `${inject('pgDatabasePrefix')}_${base}_${randomBytes(3).toString('hex')}`
  return createDatabaseOn(inject('pg'), unique)
}
