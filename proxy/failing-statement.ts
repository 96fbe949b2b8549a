/**
 * How pgveil refuses a statement without breaking the protocol's rhythm: it sends
 * PostgreSQL a statement that fails with pgveil's marker SQLSTATE and nothing else in
 * it, so the transaction aborts exactly as after any error and replies pair up as the
 * client expects; the client gets pgveil's own error in place of PostgreSQL's.
 */
import { PGVEIL_REFUSED } from '../policy/sql-plan.js'
import { encodeBind, encodeExecute, encodeParse } from '../protocol/frontend.js'

export const FAILING_SQL = `DO $pgveil$BEGIN RAISE EXCEPTION USING ERRCODE = '${PGVEIL_REFUSED}', MESSAGE = 'refused by pgveil'; END$pgveil$`

/** The failing statement in the extended protocol: Parse, Bind and Execute of the unnamed statement and portal (the caller sends Sync's place). */
export function failingExtendedFrames(): Buffer[] {
  return [encodeParse({ name: '', sql: FAILING_SQL, paramTypes: [] }), encodeBind({ portal: '', statement: '', paramFormats: [], params: [], resultFormats: [] }), encodeExecute({ portal: '', maxRows: 0 })]
}
