/**
 * What a SQL text does with views over protected columns: read through readable ones,
 * or be refused, and why (policy/view-references.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { loadSqlParser } from '../../policy/sql-analyzer.js'
import { ViewReferences, type DependentView } from '../../policy/view-references.js'

const mail: DependentView = { qualified: 'public.user_mail', materialized: false, origins: 'public.users.email', unreadable: null, writable: true }
const sizes: DependentView = { qualified: 'public.mail_sizes', materialized: false, origins: 'public.users.email', unreadable: 'its definition is refused by pgveil: …', writable: false }
const report: DependentView = { qualified: 'reports.monthly', materialized: true, origins: 'public.users.email', unreadable: null, writable: false }
const joined: DependentView = { qualified: 'public.mail_orders', materialized: false, origins: 'public.users.email', unreadable: null, writable: false }
let views: ViewReferences

beforeAll(async () => {
  await loadSqlParser()
  views = new ViewReferences([mail, sizes, report, joined])
})

describe('views over protected columns in a statement', () => {
  it.each([
    'SELECT email FROM user_mail WHERE username = $1',
    'SELECT m.email, u.id FROM public.user_mail m JOIN users u USING (username)',
    'WITH m AS (SELECT email FROM user_mail) SELECT * FROM m',
    'SELECT * FROM reports.monthly',
    'DECLARE c CURSOR FOR SELECT email FROM user_mail',
    'SELECT 1; SELECT email FROM user_mail',
    'COPY (SELECT email FROM user_mail WHERE username = $1) TO STDOUT',
    'CREATE MATERIALIZED VIEW mail_snapshot AS SELECT username, email FROM user_mail',
  ])('read through readable views: %s', (sql) => {
    expect(views.useIn(sql)).toEqual({ refused: null })
  })

  it.each([
    'INSERT INTO user_mail (username, email) VALUES ($1, $2) RETURNING email',
    "UPDATE user_mail SET email = $1 WHERE username = 'x'",
    'DELETE FROM public.user_mail WHERE email = $1',
    'INSERT INTO users (email) SELECT email FROM user_mail',
    'UPDATE users SET note = m.username FROM user_mail m WHERE m.username = users.username',
  ])('let an INSERT, UPDATE or DELETE write through a writable view, or into a table while reading readable views: %s', (sql) => {
    expect(views.useIn(sql)).toEqual({ refused: null })
  })

  it.each([
    ['INSERT INTO mail_orders (email) VALUES ($1)', joined],
    ["UPDATE reports.monthly SET email = 'x'", report],
    ['DELETE FROM mail_orders', joined],
    ['MERGE INTO user_mail m USING users u ON m.username = u.username WHEN MATCHED THEN DO NOTHING', mail],
    ['COPY user_mail TO STDOUT', mail],
    ['COPY user_mail FROM STDIN', mail],
    ['COPY (WITH gone AS (DELETE FROM users RETURNING username) SELECT email FROM user_mail JOIN gone USING (username)) TO STDOUT', mail],
    ['SELECT email INTO copied FROM user_mail', mail],
    ['WITH gone AS (DELETE FROM users RETURNING username) SELECT email FROM user_mail JOIN gone USING (username)', mail],
    ['WITH gone AS (DELETE FROM users RETURNING email) INSERT INTO user_mail (email) SELECT email FROM gone', mail],
    ['CREATE TABLE copied AS SELECT email FROM user_mail', mail],
    ['CREATE MATERIALIZED VIEW gone_mail AS WITH gone AS (DELETE FROM users RETURNING username) SELECT email FROM user_mail JOIN gone USING (username)', mail],
    ['EXPLAIN ANALYZE SELECT email FROM reports.monthly', report],
  ])('refuse writes through a view PostgreSQL does not write through by itself, and other statements through a readable view: %s', (sql, view) => {
    expect(views.useIn(sql)).toEqual({ refused: view, reason: 'write' })
  })

  it('refuses any statement through a view pgveil does not read through, a bare name of a view outside public, and an unparseable text naming a view', () => {
    expect(views.useIn('SELECT size FROM mail_sizes')).toEqual({ refused: sizes, reason: 'unreadable' })
    expect(views.useIn('SELECT email FROM user_mail, public.mail_sizes')).toEqual({ refused: sizes, reason: 'unreadable' })
    expect(views.useIn('SELECT * FROM monthly')).toEqual({ refused: report, reason: 'unqualified' })
    expect(views.useIn('SELEC email FROM user_mail')).toEqual({ refused: mail, reason: 'unparseable' })
  })

  it('leaves alone statements that name none of them, and DDL on views pgveil does not read through', () => {
    for (const sql of ['SELECT email FROM users', "SELECT 'user_mail' AS name", 'DROP VIEW mail_sizes', 'DROP VIEW user_mail', 'CREATE VIEW sizes_again AS SELECT size FROM mail_sizes', 'GRANT SELECT ON mail_sizes TO app', 'SELECT * FROM other.user_mail']) {
      expect(views.useIn(sql)).toBeNull()
    }
  })

  it('has DDL naming a readable view analysed knowing it (a view over it, a DEFAULT on its column)', () => {
    for (const sql of ['REFRESH MATERIALIZED VIEW reports.monthly', "CREATE VIEW mail_again AS SELECT email FROM user_mail WHERE email = 'x'", "ALTER VIEW user_mail ALTER COLUMN email SET DEFAULT 'x'"]) {
      expect(views.useIn(sql)).toEqual({ refused: null })
    }
  })
})
