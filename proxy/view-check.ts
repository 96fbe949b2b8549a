/**
 * For `pgveil check`: views and materialized views that read protected columns
 * (views over them too). pgveil reads through a view that passes each protected
 * column it reads through unchanged, and writes through one PostgreSQL writes
 * through by itself (proxy/catalog.ts); statements through any other such view are
 * refused (policy/view-references.ts). The check lists the first kind as fine and
 * names the second for the operator.
 */
import type { DependentView } from '../policy/view-references.js'

export function viewKind(view: DependentView): string {
  return view.materialized ? 'materialized view' : 'view'
}

/** `column a.b.c` or `columns a.b.c, d.e.f`: the protected columns the view reads. */
export function originsText(view: DependentView): string {
  return `column${view.origins.includes(', ') ? 's' : ''} ${view.origins}`
}

/** One line per view pgveil reads through. */
export function readableViewLines(views: readonly DependentView[]): string[] {
  return views
    .filter((view) => view.unreadable === null)
    .map((view) => `${viewKind(view)} ${view.qualified}: ok (returns protected ${originsText(view)} unchanged; pgveil ${view.writable ? 'reads and writes through it' : 'reads through it, and refuses writes through it, which PostgreSQL would not make to the table by itself'})`)
}

/** One problem per view over protected columns that pgveil does not read through. */
export function dependentViewProblems(views: readonly DependentView[]): string[] {
  return views
    .filter((view) => view.unreadable !== null)
    .map((view) => {
      const kind = viewKind(view)
      return (
        `${kind} ${view.qualified} reads protected ${originsText(view)}, but ${view.unreadable}: pgveil cannot decrypt through this ${kind}, so it refuses ` +
        `statements that read or write through it (PV001), which would otherwise show ciphertext or send a search value written against it to PostgreSQL as written` +
        `\n  fix: select the encrypted columns unchanged in the ${kind} (no function, cast, condition or sort on them), or query the table through pgveil and DROP ${view.materialized ? 'MATERIALIZED VIEW' : 'VIEW'} ${view.qualified} (or revoke it from the application's role)`
      )
    })
}
