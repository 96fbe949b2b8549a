/**
 * Error texts for the audit log. PostgreSQL quotes values in its messages
 * (`invalid input syntax for type integer: "4111…"`, `Key (email)=(…) already
 * exists`, `Failing row contains (…)`), so only a redacted message goes in:
 * every quoted or parenthesised part replaced by `?`, and no DETAIL at all.
 * Messages a user wrote (RAISE, class P0) are dropped whole. pgveil's own
 * refusals name columns but never values, and are kept.
 */
const QUOTED = /"(?:[^"]|"")*"|'(?:[^']|'')*'/g
const UNTERMINATED = /["'].*$/
const PARENTHESISED = /\([^()]*\)/g
const AFTER_COLON = /: .*$/
/** Long digit runs: a value spelled without quotes (out-of-range numbers, some casts). */
const DIGITS = /\d{4,}/g
const MAX_MESSAGE = 300

export function redactErrorMessage(sqlstate: string, message: string, refusedByPgveil: boolean): string {
  if (refusedByPgveil) return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message
  if (sqlstate.startsWith('P0')) return '(message written by the database code, not logged)'
  let redacted = message.replace(QUOTED, '?').replace(UNTERMINATED, '?')
  // Innermost first, until none is left: `(alice, ssn (home), bob)` must not keep alice and bob.
  for (let previous = ''; previous !== redacted; ) {
    previous = redacted
    redacted = redacted.replace(PARENTHESISED, '\u0000')
  }
  redacted = redacted.replaceAll('\u0000', '(?)').replace(DIGITS, '?')
  // "invalid input syntax for type json: Token … is invalid" and the like: what follows a colon may be a value.
  if (sqlstate.startsWith('22')) redacted = redacted.replace(AFTER_COLON, ': ?')
  return redacted.length > MAX_MESSAGE ? `${redacted.slice(0, MAX_MESSAGE)}…` : redacted
}
