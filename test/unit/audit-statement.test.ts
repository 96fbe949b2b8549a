/**
 * What the audit log says about SQL texts and errors: kinds, normalization,
 * tables and protected columns, the literal-shape cache key, the fallback for
 * unparseable text, error-message redaction, and the identity tags a session
 * supplies. No value survives any of them.
 */
import { PassThrough } from 'node:stream'
import { serialize } from 'pg-protocol'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createMetrics } from '../../audit/metrics.js'
import { redactErrorMessage } from '../../audit/redact.js'
import { AuditSink } from '../../audit/sink.js'
import { literalShape, sameLiteralShape, StatementSummarizer } from '../../audit/statement-summary.js'
import { SessionAudit, StatementMetrics } from '../../proxy/statement-audit.js'

const summarizer = await StatementSummarizer.create({ columnsOf: (schema, table) => (schema === 'public' && table === 'users' ? ['email', 'ssn'] : undefined) })

describe('statement summaries', () => {
  it('classifies, normalizes and attributes protected columns', () => {
    const one = (sql: string) => {
      const [summary] = summarizer.summarize(sql)
      return { kind: summary!.kind, statement: summary!.statement, tables: summary!.tables, read: summary!.protectedRead, written: summary!.protectedWritten }
    }
    expect(one("SELECT id, email FROM users u WHERE u.ssn = '123-45-6789'")).toEqual({ kind: 'select', statement: 'SELECT id, email FROM users u WHERE u.ssn = $1', tables: ['public.users'], read: ['public.users.email', 'public.users.ssn'], written: [] })
    expect(one("INSERT INTO users (id, email) VALUES (1, 'a@b.c')")).toEqual({ kind: 'insert', statement: 'INSERT INTO users (id, email) VALUES ($1, $2)', tables: ['public.users'], read: [], written: ['public.users.email'] })
    expect(one('INSERT INTO users VALUES ($1, $2, $3)')).toMatchObject({ written: ['public.users.email', 'public.users.ssn'] })
    expect(one("UPDATE users SET ssn = 'x' WHERE id = 3")).toMatchObject({ kind: 'update', read: [], written: ['public.users.ssn'] })
    expect(one('WITH x AS (SELECT * FROM users) SELECT * FROM x')).toMatchObject({ tables: ['public.users'], read: ['public.users.email', 'public.users.ssn'] })
    expect(one('COPY users (email) TO STDOUT')).toMatchObject({ kind: 'copy', read: ['public.users.email'], written: [] })
    expect(one('SELECT name FROM billing.accounts')).toMatchObject({ tables: ['billing.accounts'], read: [] })
    expect(one('TRUNCATE users')).toMatchObject({ kind: 'delete' })
    expect(one('CREATE INDEX ON users (id)')).toMatchObject({ kind: 'ddl' })
    expect(one('BEGIN')).toMatchObject({ kind: 'transaction' })
    expect(one('SET search_path = public')).toMatchObject({ kind: 'set' })
    expect(one('VACUUM users')).toMatchObject({ kind: 'utility' })
    expect(one('  ')).toMatchObject({ kind: 'empty' })
  })

  it('splits a multi-statement text, normalizing each statement on its own', () => {
    expect(summarizer.summarize("SELECT 'é'; DELETE FROM users WHERE id = 7").map((s) => [s.kind, s.statement])).toEqual([
      ['select', 'SELECT $1'],
      ['delete', 'DELETE FROM users WHERE id = $1'],
    ])
  })

  it('never keeps a literal of an unparseable text', () => {
    for (const sql of ["SELEC 'secret-1' FROM t", "UPDATE t SET a = E'it\\'s secret-2' WHER", 'SELEC $tag$secret-3$tag$', 'SELEC 41111111', "INSERT INTO t VALUES ('secret-4"]) {
      const [summary] = summarizer.summarize(sql)
      expect(summary!.statement).not.toMatch(/secret|4111/)
      expect(summary!.fingerprint).toMatch(/^x[0-9a-f]{15}$/)
    }
    expect(summarizer.summarize('SELEC $1, "Quoted" FROM t')[0]!.statement).toBe('SELEC $1, ?…')
  })

  it('recognises two texts of one literal shape in place, and never calls texts of different shapes the same', () => {
    const same = (a: string, b: string): boolean => {
      const bytes = Buffer.from(`##${a}#`)
      const other = Buffer.from(b)
      return sameLiteralShape(bytes, 2, bytes.length - 1, other, other.length)
    }
    expect(same('SELECT abalance FROM pgbench_accounts WHERE aid = 12345;', 'SELECT abalance FROM pgbench_accounts WHERE aid = 7;')).toBe(true)
    expect(same("UPDATE t SET v = 'héllo', n = 1.5e3 WHERE k = 'a''b'", "UPDATE t SET v = '', n = 2 WHERE k = 'ü'")).toBe(true)
    expect(same('SELECT "col 1", t1.c2, $1 FROM "T"', 'SELECT "col 1", t1.c2, $1 FROM "T"')).toBe(true)
    expect(same('SELECT 1', 'SELECT a')).toBe(false)
    expect(same('SELECT t1 FROM t', 'SELECT t2 FROM t')).toBe(false)
    expect(same('SELECT $1', 'SELECT $2')).toBe(false)
    expect(same('SELECT "a1"', 'SELECT "a2"')).toBe(false)
    expect(same('SELECT 1', 'SELECT 1, 2')).toBe(false)
    // Left to the full path: E strings, dollar quotes, unterminated literals.
    expect(same("SELECT E'a'", "SELECT E'b'")).toBe(false)
    expect(same('SELECT $q$a$q$', 'SELECT $q$b$q$')).toBe(false)
    expect(same("SELECT 'open", "SELECT 'open")).toBe(false)
    // Whatever the texts, the same shape in place means the same literalShape.
    const piece = fc.constantFrom('SELECT ', 'a', 't1', '1', '42', '3.5', "'x'", "'it''s'", "''", '"Q"', '"q 1"', '$1', '$q$', ' ', ',', 'E', "E'z'", 'é', '.', '=', "'")
    const text = fc.array(piece, { maxLength: 12 }).map((parts) => parts.join(''))
    fc.assert(
      fc.property(text, text, (a, b) => {
        if (same(a, b)) expect(literalShape(a)).toBe(literalShape(b))
      }),
      { numRuns: 3000 },
    )
    fc.assert(
      fc.property(fc.array(fc.constantFrom('SELECT ', 'a', '1', '42', "'x'", "'y''z'", ' ', ',', '=', '"Q"'), { maxLength: 10 }), (parts) => {
        // Pieces apart, so that a number is a literal, not the end of a name.
        const a = parts.join(' ')
        const b = parts.map((p) => (/^\d+$/.test(p) ? '7' : p.startsWith("'") ? "'other'" : p)).join(' ')
        expect(literalShape(a)).toBe(literalShape(b))
        expect(same(a, b)).toBe(true)
      }),
      { numRuns: 1000 },
    )
  })

  it('gives texts that differ only in literals one shape, and others different ones', () => {
    expect(literalShape("SELECT a FROM t WHERE id = 42 AND s = 'x''y' AND d = $q$z$q$")).toBe('SELECT a FROM t WHERE id = ? AND s = ? AND d = ?')
    expect(literalShape("SELECT E'a\\'b', t1.c2, $1 FROM t1")).toBe('SELECT E?, t1.c2, $1 FROM t1')
    expect(literalShape('SELECT "it\'s" FROM t')).toBe('SELECT "it\'s" FROM t')
    expect(literalShape("SELECT 'unterminated")).toBe('SELECT ?')
    expect(literalShape('SELECT 1')).toBe(literalShape('SELECT 99'))
    expect(literalShape('SELECT a FROM t')).not.toBe(literalShape('SELECT b FROM t'))
    // The shape cache serves both texts with the first one's normalization, never its values.
    const first = summarizer.summarize("SELECT * FROM users WHERE email = 'first@example.com'")
    const second = summarizer.summarize("SELECT * FROM users WHERE email = 'second@example.com'")
    expect(second).toBe(first)
    expect(JSON.stringify(second)).not.toMatch(/example/)
  })
})

describe('error message redaction', () => {
  it('removes quoted, parenthesised and numeric values', () => {
    expect(redactErrorMessage('22P02', 'invalid input syntax for type integer: "4111-secret"', false)).toBe('invalid input syntax for type integer: ?')
    expect(redactErrorMessage('23505', 'duplicate key value violates unique constraint "users_email_key"', false)).toBe('duplicate key value violates unique constraint ?')
    expect(redactErrorMessage('22003', 'value "123456789012" is out of range for type integer', false)).toBe('value ? is out of range for type integer')
    expect(redactErrorMessage('22023', 'invalid value for parameter: secret', false)).toBe('invalid value for parameter: ?')
    expect(redactErrorMessage('23514', 'new row for relation "t" violates check constraint "c": Failing row contains (alice, ssn 12 (home), bob).', false)).not.toMatch(/alice|bob|home/)
    expect(redactErrorMessage('23514', 'new row for relation "t" violates check constraint "c" (secret)', false)).toBe('new row for relation ? violates check constraint ? (?)')
    expect(redactErrorMessage('P0001', 'custom message with secret', false)).toBe('(message written by the database code, not logged)')
    expect(redactErrorMessage('42601', "syntax error at or near \"'secret", false)).toBe('syntax error at or near ?')
    expect(redactErrorMessage('PV001', 'column "public.users.email" is encrypted; LIKE is not supported on it', true)).toBe('column "public.users.email" is encrypted; LIKE is not supported on it')
  })
})

/** An audit sink sealing into memory, and the statement lines written to it. */
function auditToMemory(keyByte: number): { sink: AuditSink; metrics: ReturnType<typeof createMetrics>; statementLines: () => Record<string, unknown>[] } {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()))
  const metrics = createMetrics({ defaultMetrics: false })
  const sink = AuditSink.open({ to: 'test', chainKey: Buffer.alloc(32, keyByte), stream })
  const statementLines = (): Record<string, unknown>[] => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'statement')
  return { sink, metrics, statementLines }
}

describe('session audit', () => {
  it('carries the identity tags the session supplies into later statement lines, and writes session events', async () => {
    const stream = new PassThrough()
    let text = ''
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()))
    const metrics = createMetrics({ defaultMetrics: false })
    const ctx = { sink: AuditSink.open({ to: 'test', chainKey: Buffer.alloc(32, 5), stream }), summarizer, metrics, statementMetrics: new StatementMetrics(metrics) }
    const audit = new SessionAudit(() => ctx, 42, '10.0.0.9:5000')
    audit.startup('app', 'shop', 'api')
    const query = serialize.query('SELECT email FROM users WHERE id = 7')
    const commandComplete = Buffer.concat([Buffer.from([0x43, 0, 0, 0, 13]), Buffer.from('SELECT 1\0')])
    const readyForQuery = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])
    const run = (): void => {
      audit.onClientFrame(query, 0, query.length)
      audit.onClientBound(commandComplete, 0, commandComplete.length)
      audit.onClientBound(readyForQuery, 0, readyForQuery.length)
    }
    run()
    audit.setIdentity({ iss: 'https://auth.example.com', sub: 'alice', aud: 'api' }, { tenant: 't1' })
    audit.sessionEvent('identity_set', { iss: 'https://auth.example.com', sub: 'alice' })
    run()
    audit.end()
    await ctx.sink.close()
    const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    const statements = lines.filter((l) => l.event === 'statement')
    expect(statements.map((l) => [l.identity, l.context, l.rows, l.protected_read])).toEqual([
      [null, null, 1, ['public.users.email']],
      [{ iss: 'https://auth.example.com', sub: 'alice', aud: 'api' }, { tenant: 't1' }, 1, ['public.users.email']],
    ])
    expect(lines.find((l) => l.event === 'identity_set')).toMatchObject({ session: 42, client: '10.0.0.9:5000', user: 'app', database: 'shop', application_name: 'api', sub: 'alice' })
    expect(lines.find((l) => l.event === 'disconnect')).toMatchObject({ session: 42, statements: 2 })
  })

  it('summarizes each Parse by its own text: a text parsed again, another text, and the same text after a policy reload', async () => {
    const { sink, metrics, statementLines } = auditToMemory(6)
    // After a reload the policy protects nothing: the same text must then name no protected column.
    const reloaded = await StatementSummarizer.create(null)
    let ctx = { sink, summarizer, metrics, statementMetrics: new StatementMetrics(metrics) }
    const audit = new SessionAudit(() => ctx, 7, '10.0.0.9:5001')
    audit.startup('app', 'shop', 'api')
    const execute = (sql: string): void => {
      for (const frame of [serialize.parse({ text: sql }), serialize.bind(), serialize.execute(), serialize.sync()]) audit.onClientFrame(frame, 0, frame.length)
      for (const frame of [Buffer.from([0x31, 0, 0, 0, 4]), Buffer.from([0x32, 0, 0, 0, 4]), Buffer.concat([Buffer.from([0x43, 0, 0, 0, 13]), Buffer.from('SELECT 1\0')]), Buffer.from([0x5a, 0, 0, 0, 5, 0x49])]) {
        audit.onClientBound(frame, 0, frame.length)
      }
    }
    execute('SELECT email FROM users WHERE id = $1')
    execute('SELECT email FROM users WHERE id = $1')
    execute('SELECT username FROM users WHERE id = $1')
    execute('SELECT email FROM users WHERE id = $1')
    ctx = { ...ctx, summarizer: reloaded }
    execute('SELECT email FROM users WHERE id = $1')
    audit.end()
    await sink.close()
    const statements = statementLines()
    expect(statements.map((l) => [l.statement, l.protected_read])).toEqual([
      ['SELECT email FROM users WHERE id = $1', ['public.users.email']],
      ['SELECT email FROM users WHERE id = $1', ['public.users.email']],
      ['SELECT username FROM users WHERE id = $1', []],
      ['SELECT email FROM users WHERE id = $1', ['public.users.email']],
      ['SELECT email FROM users WHERE id = $1', []],
    ])
  })

  it('forgets a named statement once PostgreSQL confirms its Close, and keeps it when the Close was skipped after an error', async () => {
    const { sink, metrics, statementLines } = auditToMemory(8)
    const ctx = { sink, summarizer, metrics, statementMetrics: new StatementMetrics(metrics) }
    const audit = new SessionAudit(() => ctx, 9, '10.0.0.9:5002')
    audit.startup('app', 'shop', 'api')
    const client = (...frames: Buffer[]): void => frames.forEach((frame) => audit.onClientFrame(frame, 0, frame.length))
    const server = (...frames: Buffer[]): void => frames.forEach((frame) => audit.onClientBound(frame, 0, frame.length))
    const parseComplete = Buffer.from([0x31, 0, 0, 0, 4])
    const bindComplete = Buffer.from([0x32, 0, 0, 0, 4])
    const closeComplete = Buffer.from([0x33, 0, 0, 0, 4])
    const selected = Buffer.concat([Buffer.from([0x43, 0, 0, 0, 13]), Buffer.from('SELECT 1\0')])
    const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])
    const failed = (code: string): Buffer => {
      const body = Buffer.from(`SERROR\0C${code}\0Mfailed\0Fpostgres.c\0\0`)
      return Buffer.concat([Buffer.from([0x45]), Buffer.from([0, 0, 0, body.length + 4]), body])
    }
    const run = (): void => {
      client(serialize.bind({ statement: 's1' }), serialize.execute(), serialize.sync())
      server(bindComplete, selected, ready)
    }
    client(serialize.parse({ name: 's1', text: 'SELECT email FROM users WHERE id = $1' }), serialize.sync())
    server(parseComplete, ready)
    run()
    // An earlier message fails: PostgreSQL skips the Close, so s1 is still there.
    client(serialize.parse({ name: '', text: 'SELEC oops' }), serialize.close({ type: 'S', name: 's1' }), serialize.sync())
    server(failed('42601'), ready)
    run()
    // Confirmed: s1 is gone, and a Bind of it fails as PostgreSQL says.
    client(serialize.close({ type: 'S', name: 's1' }), serialize.sync())
    server(closeComplete, ready)
    client(serialize.bind({ statement: 's1' }), serialize.execute(), serialize.sync())
    server(failed('26000'), ready)
    audit.end()
    await sink.close()
    const statements = statementLines()
    expect(statements.map((l) => [l.statement, (l.outcome as { status: string; sqlstate?: string }).sqlstate ?? 'ok'])).toEqual([
      ['SELECT email FROM users WHERE id = $1', 'ok'],
      [expect.stringMatching(/^SELEC oops/), '42601'],
      ['SELECT email FROM users WHERE id = $1', 'ok'],
      ['(unknown prepared statement)', '26000'],
    ])
  })
})
