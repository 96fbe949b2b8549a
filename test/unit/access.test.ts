import { describe, expect, it } from 'vitest'
import { AccessRules, MASKS, OPEN_ACCESS, type ColumnAccessRule } from '../../policy/access.js'
import type { VerifiedIdentity } from '../../policy/identity.js'

function identity(claims: Record<string, unknown>): VerifiedIdentity {
  return { iss: 'https://i', sub: (claims.sub as string) ?? null, aud: [], exp: null, claims }
}

const RULES: ColumnAccessRule[] = [
  { column: 'public.u.email', read: [{ claim: 'scope', includes: 'pii:read' }, { claim: 'sub', in: ['alice', 42] }], otherwise: 'mask', mask: 'email', write: null },
  { column: 'public.u.ssn', read: [{ claim: 'realm_access.roles', includes: 'hr' }], otherwise: 'error', mask: 'redact', write: [{ claim: 'admin', equals: true }] },
]

describe('AccessRules', () => {
  const rules = new AccessRules(RULES)

  it('opens a column to any matching condition', () => {
    expect(rules.view(identity({ scope: 'openid pii:read' })).readDenied.has('public.u.email')).toBe(false)
    expect(rules.view(identity({ scope: ['pii:read'] })).readDenied.has('public.u.email')).toBe(false)
    expect(rules.view(identity({ sub: 'alice' })).readDenied.has('public.u.email')).toBe(false)
    expect(rules.view(identity({ sub: 42 })).readDenied.has('public.u.email')).toBe(false)
    expect(rules.view(identity({ realm_access: { roles: ['hr'] } })).readDenied.has('public.u.ssn')).toBe(false)
  })

  it('denies everyone else, and no identity at all', () => {
    for (const who of [identity({ scope: 'pii:reader' }), identity({ sub: 'bob' }), identity({ realm_access: { roles: 'hr-lead' } }), null]) {
      const view = rules.view(who)
      expect(view.readDenied.get('public.u.email')?.kind).toBe('mask')
      expect(view.readDenied.get('public.u.ssn')).toMatchObject({ kind: 'error', message: expect.stringMatching(/permission denied for column "public\.u\.ssn"/) })
      expect(view.writeDenied.get('public.u.ssn')).toMatch(/permission denied to write column "public\.u\.ssn"/)
      expect(view.writeDenied.has('public.u.email')).toBe(false)
    }
  })

  it('an identity matching everything gets the open view; no rules at all too', () => {
    expect(rules.view(identity({ sub: 'alice', realm_access: { roles: ['hr'] }, admin: true }))).toBe(OPEN_ACCESS)
    expect(new AccessRules([]).view(null)).toBe(OPEN_ACCESS)
  })
})

describe('masks', () => {
  it.each([
    ['email', 'alice@example.com', 'a***@example.com'],
    ['email', 'no-at-sign', 'n***'],
    ['email', 'élodie@exemple.fr', 'é***@exemple.fr'],
    ['last4', '123-45-6789', '****6789'],
    ['last4', '12', '****'],
    ['redact', 'anything', '****'],
  ] as const)('%s(%s) = %s', (style, input, expected) => {
    expect(MASKS[style](input)).toBe(expected)
  })
})
