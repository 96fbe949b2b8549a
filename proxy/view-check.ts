/**
 * For `pgveil check`: views and materialized views that read protected columns.
 * pgveil maps result columns to protected columns by the table they come from, and
 * analyses SQL against the tables of the policy; a view is neither. A protected value
 * read through a view ends the session (a ciphertext never reaches a client as a
 * value), and a condition written against the view's column is not seen, so its
 * search value reaches PostgreSQL as written. Views over views count too.
 */
import type pg from 'pg'
import type { Policy } from '../policy/policy.js'

const DEPENDENT_VIEWS_SQL = `
WITH RECURSIVE dependent(oid, origin) AS (
  SELECT r.ev_class, tn.nspname || '.' || t.relname || '.' || a.attname
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
    JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
   WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
     AND r.ev_class <> t.oid
     AND (tn.nspname, t.relname, a.attname) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
  UNION
  SELECT r.ev_class, dependent.origin
    FROM dependent
    JOIN pg_catalog.pg_depend d ON d.refobjid = dependent.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
   WHERE r.ev_class <> dependent.oid
)
SELECT n.nspname AS schema, c.relname AS name, c.relkind = 'm' AS materialized, string_agg(DISTINCT dependent.origin, ', ' ORDER BY dependent.origin) AS origins
  FROM dependent
  JOIN pg_catalog.pg_class c ON c.oid = dependent.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 GROUP BY n.nspname, c.relname, c.relkind
 ORDER BY 1, 2`

export async function dependentViewProblems(client: pg.Client, policy: Policy): Promise<string[]> {
  if (policy.isEmpty) return []
  const columns = policy.columns
  const result = await client.query<{ schema: string; name: string; materialized: boolean; origins: string }>(DEPENDENT_VIEWS_SQL, [
    columns.map((column) => column.schema),
    columns.map((column) => column.table),
    columns.map((column) => column.column),
  ])
  return result.rows.map(({ schema, name, materialized, origins }) => {
    const kind = materialized ? 'materialized view' : 'view'
    return (
      `${kind} ${schema}.${name} reads protected column${origins.includes(', ') ? 's' : ''} ${origins}: pgveil cannot decrypt through a ${kind} (reading ` +
      `the column through it ends the session with PV001) and does not see conditions on it (a search value written against the ${kind} reaches PostgreSQL as written)` +
      `\n  fix: query the table through pgveil instead, and DROP ${materialized ? 'MATERIALIZED VIEW' : 'VIEW'} ${schema}.${name} (or revoke it from the application's role)`
    )
  })
}
