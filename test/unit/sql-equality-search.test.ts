import { beforeAll, describe, expect, it } from 'vitest'
import { literalReplacements, protectedColumns, searchArraySql, spliceLiterals, SqlAnalyzer, type RewritePlan, type SearchSlot, type SqlAnalysis } from '../../policy/sql-analyzer.js'

// users.email and contacts.email share an index domain; orgs.email has its own; users.ssn is not searchable.
const POLICY = protectedColumns([
  { table: 'users', columns: { email: { type: 'text', search: 'equality', indexDomain: 'index:email' }, ssn: { type: 'text' }, age: { type: 'integer', search: 'equality' } } },
  { table: 'contacts', columns: { email: { type: 'text', search: 'equality', indexDomain: 'index:email' } } },
  { table: 'orgs', columns: { email: { type: 'text', search: 'equality' } } },
])

let analyzer: SqlAnalyzer
beforeAll(async () => {
  analyzer = await SqlAnalyzer.create(POLICY)
})

/** Literal search values rendered as one element `[v1|v2]`, parameters as pgveil binds them (one index key version), written values as `<column>`. */
function spliced(sql: string, analysis: SqlAnalysis): string {
  const render = (slot: SearchSlot): string => searchArraySql(slot, 1, (values) => [`[${values.map((v) => v ?? 'NULL').join('|')}]`])
  return spliceLiterals(sql, literalReplacements(analysis, (slot) => `<${slot.column.column}>`, render))
}

function rewriteOf(sql: string): { plan: RewritePlan; text: string } {
  const analysis = analyzer.analyze(sql)
  const plan = analysis.statements[0]
  if (plan?.action !== 'rewrite') throw new Error(`expected a rewrite of ${sql}, got ${plan?.action}: ${plan?.action === 'refuse' ? plan.message : ''}`)
  return { plan, text: spliced(sql, analysis) }
}

const S = (ref: string): string => `substring(${ref} from 13 for 32)`

interface SupportedRow {
  readonly sql: string
  readonly becomes: string
  /** $n → [column, array] of parameters bound as index values. */
  readonly searchParams?: Readonly<Record<number, readonly [string, boolean]>>
  /** The statement compares index slots with each other (refused while two index key versions are held). */
  readonly slotsCompared?: boolean
}

const SUPPORTED: readonly SupportedRow[] = [
  { sql: 'SELECT id FROM users WHERE email = $1', becomes: `SELECT id FROM users WHERE ${S('email')} = ANY (ARRAY[($1::bytea[])[1]])`, searchParams: { 1: ['public.users.email', false] } },
  { sql: "SELECT id FROM users WHERE email = 'a@x'", becomes: `SELECT id FROM users WHERE ${S('email')} = ANY (ARRAY[[a@x]])` },
  { sql: 'SELECT id FROM users WHERE $1 = email', becomes: `SELECT id FROM users WHERE ${S('email')} = ANY (ARRAY[($1::bytea[])[1]])`, searchParams: { 1: ['public.users.email', false] } },
  { sql: 'SELECT id FROM users u WHERE u.email <> $1', becomes: `SELECT id FROM users u WHERE ${S('u.email')} <> ALL (ARRAY[($1::bytea[])[1]])`, searchParams: { 1: ['public.users.email', false] } },
  { sql: "SELECT id FROM users WHERE email != 'x'", becomes: `SELECT id FROM users WHERE ${S('email')} <> ALL (ARRAY[[x]])` },
  { sql: 'SELECT id FROM users WHERE email = $1::text', becomes: `SELECT id FROM users WHERE ${S('email')} = ANY (ARRAY[($1::bytea[])[1]])`, searchParams: { 1: ['public.users.email', false] } },
  { sql: "SELECT id FROM users WHERE email = CAST('x' AS text)", becomes: `SELECT id FROM users WHERE ${S('email')} = ANY (ARRAY[[x]])` },
  { sql: 'SELECT id FROM users WHERE age = 7', becomes: `SELECT id FROM users WHERE ${S('age')} = ANY (ARRAY[[7]])` },
  { sql: "SELECT id FROM users WHERE age = '7'", becomes: `SELECT id FROM users WHERE ${S('age')} = ANY (ARRAY[[7]])` },
  { sql: "SELECT id FROM users WHERE email IN ('a', 'b', NULL)", becomes: `SELECT id FROM users WHERE ${S('email')} = ANY (ARRAY[[a|b|NULL]])` },
  { sql: "SELECT id FROM users WHERE email IN ($1, 'b', $2)", becomes: `SELECT id FROM users WHERE ${S('email')} = ANY (ARRAY[($1::bytea[])[1], ($2::bytea[])[1], [b]])`, searchParams: { 1: ['public.users.email', false], 2: ['public.users.email', false] } },
  { sql: "SELECT id FROM users WHERE email NOT IN ('a')", becomes: `SELECT id FROM users WHERE ${S('email')} <> ALL (ARRAY[[a]])` },
  { sql: 'SELECT id FROM users WHERE email = ANY($1)', becomes: `SELECT id FROM users WHERE ${S('email')} = ANY(($1::bytea[]))`, searchParams: { 1: ['public.users.email', true] } },
  { sql: 'SELECT id FROM users WHERE email = ANY($1::text[])', becomes: `SELECT id FROM users WHERE ${S('email')} = ANY(($1::bytea[]))`, searchParams: { 1: ['public.users.email', true] } },
  { sql: 'SELECT id FROM users WHERE email <> ALL($1)', becomes: `SELECT id FROM users WHERE ${S('email')} <> ALL(($1::bytea[]))`, searchParams: { 1: ['public.users.email', true] } },
  { sql: 'SELECT id FROM users WHERE email IS NULL OR email = $1', becomes: `SELECT id FROM users WHERE email IS NULL OR ${S('email')} = ANY (ARRAY[($1::bytea[])[1]])`, searchParams: { 1: ['public.users.email', false] } },
  { sql: 'UPDATE users SET ssn = $1 WHERE email = $2', becomes: `UPDATE users SET ssn = $1 WHERE ${S('email')} = ANY (ARRAY[($2::bytea[])[1]])`, searchParams: { 2: ['public.users.email', false] } },
  { sql: "DELETE FROM users WHERE email = 'x' RETURNING email", becomes: `DELETE FROM users WHERE ${S('email')} = ANY (ARRAY[[x]]) RETURNING email` },
  { sql: "SELECT email FROM (SELECT email FROM users) s WHERE s.email = 'x'", becomes: `SELECT email FROM (SELECT email FROM users) s WHERE ${S('s.email')} = ANY (ARRAY[[x]])` },
  { sql: "SELECT y FROM (SELECT email, id FROM users) s(x, y) WHERE x = 'a'", becomes: `SELECT y FROM (SELECT email, id FROM users) s(x, y) WHERE ${S('x')} = ANY (ARRAY[[a]])` },
  {
    sql: 'SELECT u.id FROM users u JOIN contacts c ON c.email = u.email',
    becomes: `SELECT u.id FROM users u JOIN contacts c ON ${S('c.email')} = ${S('u.email')}`,
    slotsCompared: true,
  },
  { sql: 'SELECT count(*) FROM users GROUP BY email', becomes: `SELECT count(*) FROM users GROUP BY ${S('email')}`, slotsCompared: true },
  { sql: 'SELECT count(DISTINCT email) FROM users', becomes: `SELECT count(DISTINCT ${S('email')}) FROM users`, slotsCompared: true },
  // A subquery's column of the same index domain: both sides become slots, as in a join.
  { sql: 'SELECT id FROM contacts WHERE email IN (SELECT email FROM users WHERE id < 10)', becomes: `SELECT id FROM contacts WHERE ${S('email')} IN (SELECT ${S('email')} FROM users WHERE id < 10)`, slotsCompared: true },
  { sql: 'SELECT id FROM users u WHERE u.email = ANY (SELECT DISTINCT c.email FROM contacts c)', becomes: `SELECT id FROM users u WHERE ${S('u.email')} = ANY (SELECT DISTINCT ${S('c.email')} FROM contacts c)`, slotsCompared: true },
  { sql: 'SELECT id FROM users WHERE email NOT IN (SELECT email FROM contacts)', becomes: `SELECT id FROM users WHERE ${S('email')} NOT IN (SELECT ${S('email')} FROM contacts)`, slotsCompared: true },
  { sql: 'SELECT id FROM users WHERE email <> ALL (SELECT email FROM contacts WHERE contacts.id = users.id)', becomes: `SELECT id FROM users WHERE ${S('email')} <> ALL (SELECT ${S('email')} FROM contacts WHERE contacts.id = users.id)`, slotsCompared: true },
  { sql: 'SELECT DISTINCT email FROM users', becomes: `SELECT DISTINCT ON (${S('email')}) email FROM users`, slotsCompared: true },
  { sql: 'SELECT DISTINCT id, u.email FROM users u', becomes: `SELECT DISTINCT ON (1, ${S('u.email')}) id, u.email FROM users u`, slotsCompared: true },
  {
    sql: 'INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email',
    becomes: `INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT ((${S('email')})) DO UPDATE SET email = EXCLUDED.email`,
    slotsCompared: true,
  },
]

describe('SqlAnalyzer: equality search on searchable columns', () => {
  for (const row of SUPPORTED) {
    it(row.sql, () => {
      const { plan, text } = rewriteOf(row.sql)
      expect(text).toBe(row.becomes)
      expect(Object.fromEntries([...plan.searchParams].map(([n, p]) => [n, [p.column.name, p.array]]))).toEqual(row.searchParams ?? {})
      expect(plan.needsOneIndexVersion !== undefined).toBe(row.slotsCompared === true)
    })
  }

  it('keeps a written value and a searched value of one statement apart', () => {
    const { plan } = rewriteOf('UPDATE users SET email = $1 WHERE email = $2')
    expect([...plan.params.keys()]).toEqual([1])
    expect([...plan.searchParams.keys()]).toEqual([2])
  })

  it('locates the slot by bytes after multi-byte characters', () => {
    const sql = "SELECT 'é😀' AS x FROM users WHERE email = 'ü'"
    expect(rewriteOf(sql).text).toBe(`SELECT 'é😀' AS x FROM users WHERE ${S('email')} = ANY (ARRAY[[ü]])`)
  })
})

const REFUSED: readonly { sql: string; column: string; says: RegExp }[] = [
  { sql: "SELECT id FROM users WHERE ssn = 'x'", column: 'public.users.ssn', says: /comparison \(=\) is not supported on it \(declare the column searchable \(search: equality\)/ },
  { sql: 'SELECT id FROM users WHERE ssn IN ($1)', column: 'public.users.ssn', says: /IN \(…\) is not supported.*search: equality/ },
  { sql: 'SELECT id FROM users WHERE ssn = ANY($1)', column: 'public.users.ssn', says: /= ANY.*search: equality/ },
  { sql: 'SELECT id FROM users WHERE email < $1', column: 'public.users.email', says: /comparison \(<\) is not supported on it \(ranges need an order index/ },
  { sql: "SELECT id FROM users WHERE email BETWEEN 'a' AND 'b'", column: 'public.users.email', says: /BETWEEN is not supported on it/ },
  { sql: "SELECT id FROM users WHERE email LIKE 'a%'", column: 'public.users.email', says: /LIKE is not supported on it \(pattern matching needs the plaintext; compare with =/ },
  { sql: "SELECT id FROM users WHERE email ILIKE 'a%'", column: 'public.users.email', says: /ILIKE is not supported/ },
  { sql: 'SELECT u.id FROM users u JOIN orgs o ON o.email = u.email', column: 'public.orgs.email', says: /comparing it with column "public.users.email" is not supported: they are in different index domains \(give both columns the same index_domain/ },
  { sql: 'SELECT u.id FROM users u JOIN contacts c ON c.email = u.ssn', column: 'public.users.ssn', says: /comparison \(=\)/ },
  { sql: 'SELECT id FROM users WHERE email = lower($1)', column: 'public.users.email', says: /comparing it with a call of lower\(\) is not supported \(compare with a parameter or a literal/ },
  { sql: 'SELECT id FROM users WHERE email = name', column: 'public.users.email', says: /comparing it with a column reference is not supported/ },
  { sql: 'SELECT id FROM users WHERE email = $1::varchar', column: 'public.users.email', says: /comparing it with an expression is not supported/ },
  { sql: "SELECT id FROM users WHERE email = ANY('{a,b}')", column: 'public.users.email', says: /compare with an array parameter/ },
  { sql: 'SELECT id FROM users WHERE email = ALL($1)', column: 'public.users.email', says: /comparison \(= ALL\)/ },
  { sql: "SELECT id FROM users WHERE lower(email) = 'x'", column: 'public.users.email', says: /function lower\(\)/ },
  { sql: 'SELECT id FROM users WHERE email IS DISTINCT FROM $1', column: 'public.users.email', says: /IS \[NOT\] DISTINCT FROM/ },
  { sql: "SELECT id FROM users WHERE email IN (SELECT 'x')", column: 'public.users.email', says: /comparison with a subquery/ },
  { sql: 'SELECT id FROM users WHERE email IN (SELECT $1::text)', column: 'public.users.email', says: /comparison with a subquery/ },
  { sql: 'SELECT id FROM users WHERE email IN (SELECT email FROM orgs)', column: 'public.users.email', says: /different index domains/ },
  { sql: 'SELECT id FROM users WHERE email IN (SELECT ssn FROM users)', column: 'public.users.ssn', says: /comparison with a subquery/ },
  { sql: 'SELECT id FROM users WHERE email IN (SELECT email FROM contacts UNION SELECT email FROM users)', column: 'public.users.email', says: /comparison with a subquery|UNION/ },
  { sql: 'SELECT id FROM users WHERE email IN (SELECT lower(email) FROM contacts)', column: 'public.users.email', says: /comparison with a subquery/ },
  { sql: 'SELECT id FROM users WHERE email > ANY (SELECT email FROM contacts)', column: 'public.users.email', says: /comparison/ },
  { sql: 'SELECT email, count(*) FROM users GROUP BY email', column: 'public.users.email', says: /GROUP BY on it while also selecting it is not supported \(use SELECT DISTINCT column/ },
  { sql: 'SELECT count(*) FROM users GROUP BY ssn', column: 'public.users.ssn', says: /GROUP BY is not supported on it/ },
  { sql: 'SELECT DISTINCT email FROM users ORDER BY email', column: 'public.users.email', says: /DISTINCT with ORDER BY/ },
  { sql: 'SELECT DISTINCT * FROM users', column: 'public.users.email', says: /DISTINCT is not supported/ },
  { sql: 'SELECT DISTINCT email, ssn FROM users', column: 'public.users.ssn', says: /DISTINCT is not supported/ },
  { sql: 'SELECT count(DISTINCT ssn) FROM users', column: 'public.users.ssn', says: /aggregate count\(\)/ },
  { sql: 'INSERT INTO users (id, ssn) VALUES ($1, $2) ON CONFLICT (ssn) DO NOTHING', column: 'public.users.ssn', says: /ON CONFLICT \(…\) is not supported on it \(declare the column searchable/ },
  { sql: 'UPDATE users SET email = $1 WHERE email = $1', column: 'public.users.email', says: /parameter \$1 is written to it and also used in a search/ },
  { sql: 'SELECT id FROM users u, contacts c WHERE u.email = $1 AND c.ssn_like = $1 || $2', column: 'public.users.email', says: /parameter \$1 is searched in it and also used elsewhere/ },
  { sql: 'SELECT id FROM users u, orgs o WHERE u.email = $1 AND o.email = $1', column: 'public.orgs.email', says: /parameter \$1 is also searched in column "public.users.email"/ },
  // An alias list renames a table's columns by position, which pgveil does not know: `b` may be email, or not.
  { sql: "SELECT a FROM users u(a, b) WHERE b = 'x'", column: 'public.users.email', says: /comparison \(=\)/ },
  { sql: "CREATE INDEX ON users (id) WHERE email = 'x'", column: 'public.users.email', says: /comparison \(=\)/ },
  { sql: "CREATE VIEW ann AS SELECT id FROM users WHERE email = 'ann@x'", column: 'public.users.email', says: /comparison \(=\)/ },
  { sql: "CREATE MATERIALIZED VIEW ann AS SELECT id FROM users WHERE email = 'ann@x'", column: 'public.users.email', says: /comparison \(=\)/ },
]

describe('SqlAnalyzer: equality search refusals name the column and the remedy', () => {
  for (const row of REFUSED) {
    it(row.sql, () => {
      const analysis = analyzer.analyze(row.sql)
      expect(analysis.action).toBe('refuse')
      expect(analysis.refusal?.column?.name).toBe(row.column)
      expect(analysis.refusal?.message).toContain(`"${row.column}"`)
      expect(analysis.refusal?.message).toMatch(row.says)
    })
  }
})

describe('searchArraySql: one array element per index value, so PostgreSQL knows how many values it compares with', () => {
  const slotOf = (sql: string): SearchSlot => {
    const { plan } = rewriteOf(sql)
    const slot = plan.searches[0]
    if (slot === undefined) throw new Error(`no search slot in ${sql}`)
    return slot
  }
  const literals = (values: readonly (string | null)[]): string[] => values.map((v) => `<${v ?? 'NULL'}>`)

  it('writes each scalar parameter out once per index key version held', () => {
    expect(searchArraySql(slotOf('SELECT id FROM users WHERE email = $1'), 2, literals)).toBe('ARRAY[($1::bytea[])[1], ($1::bytea[])[2]]')
    expect(searchArraySql(slotOf('SELECT id FROM users WHERE email = $1'), 3, literals)).toBe('ARRAY[($1::bytea[])[1], ($1::bytea[])[2], ($1::bytea[])[3]]')
  })

  it('puts parameters and literal index values of an IN list into one array', () => {
    expect(searchArraySql(slotOf("SELECT id FROM users WHERE email IN ($2, 'b', $1, NULL)"), 2, literals)).toBe('ARRAY[($2::bytea[])[1], ($2::bytea[])[2], ($1::bytea[])[1], ($1::bytea[])[2], <b>, <NULL>]')
  })

  it('keeps an array parameter whole: its length is known only at Bind', () => {
    expect(searchArraySql(slotOf('SELECT id FROM users WHERE email = ANY($1)'), 2, literals)).toBe('$1::bytea[]')
  })

  it('refuses an index key version count that is not a positive integer', () => {
    const slot = slotOf('SELECT id FROM users WHERE email = $1')
    expect(() => searchArraySql(slot, 0, literals)).toThrow(RangeError)
    expect(() => searchArraySql(slot, 1.5, literals)).toThrow(/indexVersions must be a positive integer, got 1.5/)
  })
})
