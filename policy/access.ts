/**
 * Access rules (`access:`): which verified claims may read the plaintext of a
 * protected column, what everyone else gets instead (NULL, a mask, or an error),
 * and who may write it. Evaluated once per identity change into a ColumnAccessView
 * that row decryption and encryption consult per column, so the hot loop does a
 * map lookup, not a claim match.
 */
import { WireError } from '../protocol/errors.js'
import type { VerifiedIdentity } from './identity.js'

/** SQLSTATE insufficient_privilege, as PostgreSQL's own column privileges. */
export const INSUFFICIENT_PRIVILEGE = '42501'

/** A read or write the access rules refuse. */
export class ColumnAccessError extends WireError {
  constructor(message: string) {
    super(INSUFFICIENT_PRIVILEGE, message)
    this.name = 'ColumnAccessError'
  }
}

/** One claim test; a rule list matches when any of its conditions holds. */
export type ClaimCondition =
  | { readonly claim: string; readonly equals: string | number | boolean }
  | { readonly claim: string; readonly in: readonly (string | number)[] }
  /** The claim is a list holding the value, or a space-separated string (OAuth `scope`) with it as a word. */
  | { readonly claim: string; readonly includes: string }

export type DenialKind = 'null' | 'mask' | 'error'
export const DENIAL_KINDS: readonly DenialKind[] = ['null', 'mask', 'error']
export type MaskStyle = 'email' | 'last4' | 'redact'
export const MASK_STYLES: readonly MaskStyle[] = ['email', 'last4', 'redact']

export interface ColumnAccessRule {
  /** schema.table.column of a protected column. */
  readonly column: string
  /** Who reads the plaintext; everyone else gets `otherwise`. */
  readonly read: readonly ClaimCondition[]
  readonly otherwise: DenialKind
  /** With otherwise: mask (text columns). */
  readonly mask: MaskStyle
  /** Who may write the column; null: anyone. */
  readonly write: readonly ClaimCondition[] | null
}

/** What a reader without access gets for one column. */
export type ReadDenial =
  | { readonly kind: 'null' }
  | { readonly kind: 'mask'; readonly mask: (plaintext: string) => string }
  | { readonly kind: 'error'; readonly message: string }

/** The rules as they apply to one identity (or to none). */
export interface ColumnAccessView {
  /** Columns this identity may not read, by schema.table.column; absent: plaintext. */
  readonly readDenied: ReadonlyMap<string, ReadDenial>
  /** Columns this identity may not write, by schema.table.column, with the reason. */
  readonly writeDenied: ReadonlyMap<string, string>
}

export const OPEN_ACCESS: ColumnAccessView = { readDenied: new Map(), writeDenied: new Map() }

export class AccessRules {
  readonly rules: readonly ColumnAccessRule[]
  constructor(rules: readonly ColumnAccessRule[]) {
    this.rules = rules
  }

  get isEmpty(): boolean {
    return this.rules.length === 0
  }

  view(identity: VerifiedIdentity | null): ColumnAccessView {
    if (this.rules.length === 0) return OPEN_ACCESS
    const readDenied = new Map<string, ReadDenial>()
    const writeDenied = new Map<string, string>()
    const who = identity === null ? 'no verified identity' : `identity ${JSON.stringify(identity.sub ?? '(no sub)')} of ${JSON.stringify(identity.iss)}`
    for (const rule of this.rules) {
      if (!matchesAny(rule.read, identity)) {
        readDenied.set(rule.column, denial(rule, who))
      }
      if (rule.write !== null && !matchesAny(rule.write, identity)) writeDenied.set(rule.column, `permission denied to write column "${rule.column}": ${who} may not write it (see access rules)`)
    }
    return readDenied.size === 0 && writeDenied.size === 0 ? OPEN_ACCESS : { readDenied, writeDenied }
  }
}

function denial(rule: ColumnAccessRule, who: string): ReadDenial {
  switch (rule.otherwise) {
    case 'null':
      return NULL_DENIAL
    case 'mask':
      return { kind: 'mask', mask: MASKS[rule.mask] }
    case 'error':
      return { kind: 'error', message: `permission denied for column "${rule.column}": ${who} may not read it (see access rules)` }
  }
}

const NULL_DENIAL: ReadDenial = { kind: 'null' }

export const MASKS: Record<MaskStyle, (plaintext: string) => string> = {
  /** a***@example.com: first character and the domain. */
  email(plaintext) {
    const at = plaintext.lastIndexOf('@')
    const first = [...plaintext][0] ?? ''
    return at <= 0 ? `${first}***` : `${first}***${plaintext.slice(at)}`
  },
  /** ****1234: the last four characters. */
  last4(plaintext) {
    const chars = [...plaintext]
    return chars.length <= 4 ? '****' : `****${chars.slice(-4).join('')}`
  },
  redact() {
    return '****'
  },
}

export function matchesAny(conditions: readonly ClaimCondition[], identity: VerifiedIdentity | null): boolean {
  if (identity === null) return false
  return conditions.some((condition) => matches(condition, claimAt(identity.claims, condition.claim)))
}

function matches(condition: ClaimCondition, value: unknown): boolean {
  if (value === undefined || value === null) return false
  if ('equals' in condition) return value === condition.equals
  if ('in' in condition) return (typeof value === 'string' || typeof value === 'number') && condition.in.includes(value)
  if (Array.isArray(value)) return value.includes(condition.includes)
  return typeof value === 'string' && value.split(/\s+/).includes(condition.includes)
}

/** A claim by name; a dotted name walks into objects (realm_access.roles). A top-level claim with the dotted name wins. */
function claimAt(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name]
  let value: unknown = claims
  for (const part of name.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, part)) return undefined
    value = (value as Record<string, unknown>)[part]
  }
  return value
}
