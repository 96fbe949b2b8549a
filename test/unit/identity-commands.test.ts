import { describe, expect, it } from 'vitest'
import { mayNeedIdentityScan, scanStatements } from '../../policy/identity-commands.js'

function command(sql: string): unknown {
  const statements = scanStatements(sql).filter((s) => !s.empty)
  expect(statements).toHaveLength(1)
  return statements[0]!.command
}

describe('scanStatements', () => {
  it.each([
    ["SET IDENTITY TO 'a.b.c'", { kind: 'set', target: 'identity', local: false, value: { literal: 'a.b.c' } }],
    ["set identity = 'a.b.c'", { kind: 'set', target: 'identity', local: false, value: { literal: 'a.b.c' } }],
    ["SeT sEsSiOn IdEnTiTy To 'x'", { kind: 'set', target: 'identity', local: false, value: { literal: 'x' } }],
    ["SET LOCAL CONTEXT TO '{\"a\": \"it''s\"}'", { kind: 'set', target: 'context', local: true, value: { literal: '{"a": "it\'s"}' } }],
    ["SET CONTEXT TO E'{\"a\": \"x\\\\y\\n\"}'", { kind: 'set', target: 'context', local: false, value: { literal: '{"a": "x\\y\n"}' } }],
    ['SET CONTEXT TO $tag${"a": 1}$tag$', { kind: 'set', target: 'context', local: false, value: { literal: '{"a": 1}' } }],
    ['SET IDENTITY TO $1', { kind: 'set', target: 'identity', local: false, value: { param: 1 } }],
    ['SET IDENTITY TO DEFAULT', { kind: 'set', target: 'identity', local: false, value: { default: true } }],
    ['/* lead */ RESET -- why\n identity', { kind: 'reset', target: 'identity' }],
    ['reset CONTEXT', { kind: 'reset', target: 'context' }],
    ['SHOW identity', { kind: 'show', target: 'identity' }],
    ['show Context', { kind: 'show', target: 'context' }],
    ['RESET ALL', { kind: 'reset-all' }],
    ['discard all', { kind: 'reset-all' }],
  ])('%s', (sql, expected) => {
    expect(command(sql)).toEqual(expected)
  })

  it.each([
    "SET identity_x TO 'a'",
    'SET "identity" TO 1',
    "SET IDENTITY TO 'a' 'b'",
    'SET IDENTITY',
    "SET IDENTITY 'a'",
    'SHOW identity_column',
    'SELECT identity FROM t',
    "SET application_name = 'identity'",
    'DISCARD PLANS',
    "SELECT 'SET IDENTITY TO x'",
  ])('is not a command: %s', (sql) => {
    expect(command(sql)).toBeNull()
  })

  it('splits at top-level semicolons only', () => {
    const statements = scanStatements(`SET CONTEXT TO '{";": 1}'; /* ; */ SELECT $$;$$; -- ;\nSHOW CONTEXT;`)
    expect(statements.map((s) => s.command?.kind ?? null)).toEqual(['set', null, 'show'])
    expect(statements.map((s) => s.empty)).toEqual([false, false, false])
  })

  it('recognises transaction control and statements that set pgveil.* settings', () => {
    expect(scanStatements('BEGIN; savepoint a; ROLLBACK TO a; commit; PREPARE TRANSACTION \'x\'; START TRANSACTION').every((s) => s.transactionControl)).toBe(true)
    expect(scanStatements('SELECT 1; PREPARE q AS SELECT 1').some((s) => s.transactionControl)).toBe(false)
    for (const sql of ["SET pgveil.sub = 'a'", "select PG_CATALOG.SET_CONFIG('pgveil.sub', 'a', false)", 'ALTER ROLE r SET "pgveil".claims = 1', 'RESET pgveil.sub']) {
      expect(scanStatements(sql)[0]!.setsClaimSettings).toBe(true)
    }
    for (const sql of ["SELECT current_setting('pgveil.sub', true)", "SELECT 'set_config'"]) expect(scanStatements(sql)[0]!.setsClaimSettings).toBe(false)
  })

  it('has a pre-check that passes every command', () => {
    for (const sql of ["SET IDENTITY TO 'a'", 'RESET CONTEXT', 'DISCARD ALL', 'SET pgveil.x = 1']) expect(mayNeedIdentityScan(sql)).toBe(true)
    expect(mayNeedIdentityScan('SELECT 1 FROM users WHERE id = $1')).toBe(false)
  })
})
