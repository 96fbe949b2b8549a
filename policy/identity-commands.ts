/**
 * Recognises the statements pgveil answers itself: SET [SESSION | LOCAL]
 * {IDENTITY | CONTEXT} {TO | =} {'…' | $n | DEFAULT}, RESET {IDENTITY | CONTEXT},
 * SHOW {IDENTITY | CONTEXT}, and RESET ALL / DISCARD ALL (forwarded, but they also
 * clear identity and context). Any letter case, comments and whitespace anywhere.
 *
 * A small lexer of its own rather than libpg-query: it runs only when a cheap
 * pre-check matches, needs no WASM module, and splits multi-statement strings at
 * top-level semicolons while respecting quotes, dollar quotes and comments.
 */

export type IdentityTarget = 'identity' | 'context'

export type IdentityValue = { readonly literal: string } | { readonly param: number } | { readonly default: true }

export type IdentityCommand =
  | { readonly kind: 'set'; readonly target: IdentityTarget; readonly local: boolean; readonly value: IdentityValue }
  | { readonly kind: 'reset'; readonly target: IdentityTarget }
  | { readonly kind: 'show'; readonly target: IdentityTarget }
  /** RESET ALL, DISCARD ALL: PostgreSQL runs them too. */
  | { readonly kind: 'reset-all' }

export interface ScannedStatement {
  /** The statement's range in the SQL string (JS string indices), without its semicolon. */
  readonly start: number
  readonly end: number
  /** A command pgveil answers (reset-all is also forwarded), or null. */
  readonly command: IdentityCommand | null
  /** BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …: allowed before an identity is set. */
  readonly transactionControl: boolean
  /** Sets pgveil.* settings (SET pgveil.x, set_config, ALTER … SET pgveil.x): refused when claims are forwarded. */
  readonly setsClaimSettings: boolean
  /** Nothing but whitespace and comments. */
  readonly empty: boolean
}

/** Cheap test: could `sql` hold one of pgveil's commands or touch pgveil.* settings? */
export function mayNeedIdentityScan(sql: string): boolean {
  return IDENTITY_HINT.test(sql)
}

const IDENTITY_HINT = /identity|context|all|pgveil|set_config/i

type Token =
  | { readonly type: 'word'; readonly value: string; readonly quoted: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'param'; readonly value: number }
  | { readonly type: 'op'; readonly value: string }

/** Splits `sql` into statements and classifies each. Unterminated quotes end the text (PostgreSQL will report them). */
export function scanStatements(sql: string): ScannedStatement[] {
  const statements: ScannedStatement[] = []
  let tokens: Token[] = []
  let start = 0
  let i = 0
  const n = sql.length
  const finish = (end: number): void => {
    statements.push(classify(tokens, start, end))
    tokens = []
  }
  while (i < n) {
    const c = sql[i]!
    if (c === ';') {
      finish(i)
      i++
      start = i
      continue
    }
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
      i++
      continue
    }
    if (c === '-' && sql[i + 1] === '-') {
      const newline = sql.indexOf('\n', i)
      i = newline < 0 ? n : newline + 1
      continue
    }
    if (c === '/' && sql[i + 1] === '*') {
      i = skipBlockComment(sql, i)
      continue
    }
    if (c === "'") {
      const [value, next] = readString(sql, i + 1, false)
      tokens.push({ type: 'string', value })
      i = next
      continue
    }
    if ((c === 'E' || c === 'e') && sql[i + 1] === "'") {
      const [value, next] = readString(sql, i + 2, true)
      tokens.push({ type: 'string', value })
      i = next
      continue
    }
    if (c === '"') {
      let value = ''
      let j = i + 1
      while (j < n) {
        if (sql[j] === '"') {
          if (sql[j + 1] === '"') {
            value += '"'
            j += 2
            continue
          }
          break
        }
        value += sql[j]
        j++
      }
      tokens.push({ type: 'word', value, quoted: true })
      i = j + 1
      continue
    }
    if (c === '$') {
      const param = /^\$(\d+)/.exec(sql.slice(i, i + 12))
      if (param !== null) {
        tokens.push({ type: 'param', value: Number(param[1]) })
        i += param[0].length
        continue
      }
      const tag = /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(sql.slice(i, i + 70))
      if (tag !== null) {
        const close = sql.indexOf(tag[0], i + tag[0].length)
        const end = close < 0 ? n : close
        tokens.push({ type: 'string', value: sql.slice(i + tag[0].length, end) })
        i = close < 0 ? n : close + tag[0].length
        continue
      }
    }
    if (isWordStart(c)) {
      let j = i + 1
      while (j < n && isWordPart(sql[j]!)) j++
      tokens.push({ type: 'word', value: sql.slice(i, j).toLowerCase(), quoted: false })
      i = j
      continue
    }
    tokens.push({ type: 'op', value: c })
    i++
  }
  if (tokens.length > 0 || statements.length === 0 || sql.slice(start).trim() !== '') finish(n)
  return statements
}

function classify(tokens: Token[], start: number, end: number): ScannedStatement {
  const base = { start, end, empty: tokens.length === 0, setsClaimSettings: setsClaimSettings(tokens) }
  const first = keyword(tokens[0])
  return { ...base, command: commandOf(tokens, first), transactionControl: isTransactionControl(tokens, first) }
}

function commandOf(tokens: Token[], first: string | null): IdentityCommand | null {
  if (first === 'reset' || first === 'discard') {
    const second = keyword(tokens[1])
    if (tokens.length !== 2) return null
    if (second === 'all') return { kind: 'reset-all' }
    if (first === 'reset' && (second === 'identity' || second === 'context')) return { kind: 'reset', target: second }
    return null
  }
  if (first === 'show') {
    const second = keyword(tokens[1])
    if (tokens.length === 2 && (second === 'identity' || second === 'context')) return { kind: 'show', target: second }
    return null
  }
  if (first !== 'set') return null
  let at = 1
  let local = false
  const scope = keyword(tokens[at])
  if (scope === 'local' || scope === 'session') {
    local = scope === 'local'
    at++
  }
  const target = keyword(tokens[at])
  if (target !== 'identity' && target !== 'context') return null
  at++
  const to = tokens[at]
  if (to === undefined || !((to.type === 'word' && !to.quoted && to.value === 'to') || (to.type === 'op' && to.value === '='))) return null
  at++
  const value = tokens[at]
  if (value === undefined || at + 1 !== tokens.length) return null
  if (value.type === 'string') return { kind: 'set', target, local, value: { literal: value.value } }
  if (value.type === 'param') return { kind: 'set', target, local, value: { param: value.value } }
  if (value.type === 'word' && !value.quoted && value.value === 'default') return { kind: 'set', target, local, value: { default: true } }
  return null
}

const TRANSACTION_WORDS = new Set(['begin', 'start', 'commit', 'end', 'rollback', 'abort', 'savepoint', 'release'])

function isTransactionControl(tokens: Token[], first: string | null): boolean {
  if (first === null) return false
  if (TRANSACTION_WORDS.has(first)) return true
  return first === 'prepare' && keyword(tokens[1]) === 'transaction'
}

/** `set_config(…)` anywhere, or an identifier `pgveil` followed by `.` (SET pgveil.sub, ALTER ROLE … SET pgveil.claims). */
function setsClaimSettings(tokens: Token[]): boolean {
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    if (token.type !== 'word') continue
    if (token.value === 'set_config') return true
    if (token.value === 'pgveil') {
      const next = tokens[i + 1]
      if (next !== undefined && next.type === 'op' && next.value === '.') return true
    }
  }
  return false
}

function keyword(token: Token | undefined): string | null {
  return token !== undefined && token.type === 'word' && !token.quoted ? token.value : null
}

function isWordStart(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c > '\u007f'
}

function isWordPart(c: string): boolean {
  return isWordStart(c) || (c >= '0' && c <= '9') || c === '$'
}

function skipBlockComment(sql: string, from: number): number {
  let depth = 0
  let i = from
  while (i < sql.length) {
    if (sql[i] === '/' && sql[i + 1] === '*') {
      depth++
      i += 2
    } else if (sql[i] === '*' && sql[i + 1] === '/') {
      depth--
      i += 2
      if (depth === 0) return i
    } else {
      i++
    }
  }
  return i
}

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }

/** A '…' string from just after its quote; `''` is a quote; E-strings also take backslash escapes. */
function readString(sql: string, from: number, escapes: boolean): [string, number] {
  let value = ''
  let i = from
  while (i < sql.length) {
    const c = sql[i]!
    if (c === "'") {
      if (sql[i + 1] === "'") {
        value += "'"
        i += 2
        continue
      }
      return [value, i + 1]
    }
    if (escapes && c === '\\' && i + 1 < sql.length) {
      const next = sql[i + 1]!
      value += ESCAPES[next] ?? next
      i += 2
      continue
    }
    value += c
    i++
  }
  return [value, i]
}
