/**
 * For `pgveil check`: search_path settings pgveil cannot see at run time. pgveil
 * resolves unqualified table names in schema public and refuses a search_path naming
 * a schema with protected tables when a client sets it (SET, connection options);
 * role and database defaults, and `"$user"` meeting a role named like such a schema,
 * are applied by PostgreSQL alone, so they are reported here instead.
 */
import type pg from 'pg'
import type { Policy } from '../policy/policy.js'
import { searchPathSchemas } from '../policy/sql-statement-walker.js'

export async function searchPathProblems(client: pg.Client, policy: Policy): Promise<string[]> {
  const schemas = new Set(policy.columns.map((column) => column.schema).filter((schema) => schema !== 'public'))
  if (schemas.size === 0) return []
  const problems: string[] = []
  const shadow = (value: string): string | undefined => searchPathSchemas(value).find((schema) => schemas.has(schema))
  const defaults = await client.query<{ role: string | null; database: string | null; setting: string }>(
    `SELECT r.rolname AS role, d.datname AS database, s.setting
       FROM pg_catalog.pg_db_role_setting x
       LEFT JOIN pg_catalog.pg_roles r ON r.oid = x.setrole
       LEFT JOIN pg_catalog.pg_database d ON d.oid = x.setdatabase,
       unnest(x.setconfig) AS s(setting)
      WHERE s.setting ILIKE 'search_path=%'`,
  )
  const overridden = new Set<string>()
  for (const row of defaults.rows) {
    const value = row.setting.slice('search_path='.length)
    if (row.role !== null && !searchPathSchemas(value).includes('$user')) overridden.add(row.role)
    const schema = shadow(value)
    if (schema === undefined) continue
    const owner = row.role !== null && row.database !== null ? `role "${row.role}" in database "${row.database}"` : row.role !== null ? `role "${row.role}"` : `database "${row.database ?? '?'}"`
    const reset = row.role !== null ? `ALTER ROLE "${row.role}"${row.database === null ? '' : ` IN DATABASE "${row.database}"`} RESET search_path` : `ALTER DATABASE "${row.database ?? '?'}" RESET search_path`
    problems.push(`search_path default of ${owner} names schema "${schema}", which holds encrypted tables; pgveil resolves unqualified table names in public, so writes through such sessions could reach an encrypted column unencrypted\n  fix: ${reset}; qualify the tables of "${schema}" with their schema`)
  }
  const current = await client.query<{ search_path: string }>('SHOW search_path')
  const serverSchema = shadow(current.rows[0]?.search_path ?? '')
  if (serverSchema !== undefined) problems.push(`the server's search_path names schema "${serverSchema}", which holds encrypted tables\n  fix: set search_path to "$user", public in postgresql.conf; qualify the tables of "${serverSchema}" with their schema`)
  const roles = await client.query<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1)', [[...schemas]])
  for (const { rolname } of roles.rows) {
    if (overridden.has(rolname)) continue
    problems.push(`role "${rolname}" has the name of schema "${rolname}", which holds encrypted tables: with the default search_path ("$user", public) its unqualified table names resolve in that schema, which pgveil cannot see\n  fix: ALTER ROLE "${rolname}" SET search_path = public; qualify the tables of "${rolname}" with their schema`)
  }
  return problems
}
