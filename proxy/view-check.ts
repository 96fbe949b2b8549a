/**
 * For `pgveil check`: views and materialized views that read protected columns
 * (views over them too). pgveil maps result columns to protected columns by the
 * table they come from, and analyses SQL against the tables of the policy; a view is
 * neither, so sessions refuse statements that read or write through such a view
 * (policy/view-references.ts), and the check names them for the operator.
 */
import type pg from 'pg'
import type { Policy } from '../policy/policy.js'
import { loadDependentViews } from './catalog.js'

export async function dependentViewProblems(client: pg.Client, policy: Policy): Promise<string[]> {
  const views = await loadDependentViews(client, policy)
  return views.map(({ qualified, materialized, origins }) => {
    const kind = materialized ? 'materialized view' : 'view'
    return (
      `${kind} ${qualified} reads protected column${origins.includes(', ') ? 's' : ''} ${origins}: pgveil cannot decrypt through a ${kind}, so it refuses ` +
      `statements that read or write through it (PV001), which would otherwise show ciphertext or send a search value written against it to PostgreSQL as written` +
      `\n  fix: query the table through pgveil instead, and DROP ${materialized ? 'MATERIALIZED VIEW' : 'VIEW'} ${qualified} (or revoke it from the application's role)`
    )
  })
}
