import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createMetrics } from '../../audit/metrics.js'
import { sealColumnValue } from '../../policy/equality-index.js'
import { Keyring } from '../../policy/keyring.js'
import { Policy, type ColumnPolicy } from '../../policy/policy.js'
import type { SqlAnalyzer } from '../../policy/sql-analyzer.js'
import { decodeRowDescription } from '../../protocol/backend.js'
import { DatabaseCatalog, type CatalogMap } from '../../proxy/catalog.js'
import { silentLogger } from '../../proxy/log.js'
import { SessionCrypto, type PortalState, type StatementState } from '../../proxy/session-crypto.js'

const BYTEA = 17
const TEXT = 25
const INT8 = 20
const TABLE = 16_400

const balance: ColumnPolicy = { schema: 'public', table: 'accounts', column: 'balance', qualified: 'public.accounts.balance', type: 'text', binding: 'public.accounts.balance' }
const keyring = new Keyring(new Map([[1, randomBytes(32)]]), 1, randomBytes(32))

/** Relations a session told its catalog map it did not know (a relation with a bytea column the catalog lacks). */
let unknownRelations: number[] = []

function session(): SessionCrypto {
  // rowDescription and decryptRow use only the policy, keyring and metrics of the context, and tell the map of relations it does not know.
  unknownRelations = []
  const catalogs = { unknownRelation: (_database: string, oid: number) => void unknownRelations.push(oid), get: () => undefined } as unknown as CatalogMap
  const crypto = new SessionCrypto({ policy: new Policy([balance]), keyring, analyzer: {} as SqlAnalyzer, catalogs, logger: silentLogger, metrics: createMetrics() }, 'app')
  crypto.catalog = new DatabaseCatalog([{ tableOid: TABLE, attnum: 2, column: balance }], [])
  return crypto
}

/** RowDescription of (id int8, balance bytea) from `tableOid`, built by hand (not by the codec under test). */
function rowDescription(tableOid = TABLE): Buffer {
  const fields = [
    { name: 'id', tableOid, columnAttr: 1, typeOid: INT8, typeSize: 8, typeModifier: -1, format: 0 },
    { name: 'balance', tableOid, columnAttr: 2, typeOid: BYTEA, typeSize: -1, typeModifier: -1, format: 0 },
  ]
  const body: Buffer[] = [int16(fields.length)]
  for (const f of fields) body.push(Buffer.from(`${f.name}\0`), int32(f.tableOid), int16(f.columnAttr), int32(f.typeOid), int16(f.typeSize), int32(f.typeModifier), int16(f.format))
  const payload = Buffer.concat(body)
  return Buffer.concat([Buffer.from('T'), int32(payload.length + 4), payload])
}

function int16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeInt16BE(n)
  return b
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

/** DataRow (id '7', balance as bytea hex text) built by hand. */
function dataRow(envelope: Buffer): Buffer {
  return textRow(['7', `\\x${envelope.toString('hex')}`])
}

function textRow(values: string[]): Buffer {
  const cells = values.map((v) => Buffer.from(v))
  const payload = Buffer.concat([int16(cells.length), ...cells.flatMap((c) => [int32(c.length), c])])
  return Buffer.concat([Buffer.from('D'), int32(payload.length + 4), payload])
}

describe('SessionCrypto.rowDescription reuses what it made of a RowDescription it has seen', () => {
  it('gives the same plan for the same bytes arriving in another, later reused buffer, and the plan still decrypts', () => {
    const crypto = session()
    const readBuffer = Buffer.alloc(256, 0xee)
    const frame = rowDescription()
    frame.copy(readBuffer, 10)
    const first = crypto.rowDescription(readBuffer.subarray(10, 10 + frame.length))
    // The read buffer is reused for the next message: the cache must not hold a view of it.
    readBuffer.fill(0x41)
    frame.copy(readBuffer, 33)
    const second = crypto.rowDescription(readBuffer.subarray(33, 33 + frame.length))
    expect(second.plan).toBe(first.plan)
    expect(second.frame.equals(first.frame)).toBe(true)
    const fields = decodeRowDescription(second.frame).fields
    expect(fields.map((f) => [f.name, f.typeOid])).toEqual([['id', INT8], ['balance', TEXT]])
    const row = dataRow(sealColumnValue(keyring, balance, '10.50'))
    expect(crypto.decryptRow(row, 0, row.length, second.plan!)).toBe(true)
    const { buffer, rowStart, position } = crypto.rows
    expect(buffer.subarray(rowStart, position).equals(textRow(['7', '10.50']))).toBe(true)
  })

  it('does not reuse a plan across different RowDescriptions or after the catalog changed', () => {
    const crypto = session()
    const protectedPlan = crypto.rowDescription(rowDescription()).plan
    expect(protectedPlan?.decrypts).toBe(true)
    // Another table with a bytea column: guarded, not decrypted.
    const other = crypto.rowDescription(rowDescription(TABLE + 1))
    expect(other.plan?.decrypts).toBe(false)
    // Unknown to the catalog (a view created straight in PostgreSQL?): the map is told, so it reads the catalog again.
    expect(unknownRelations).toEqual([TABLE + 1])
    // DDL: the refreshed catalog no longer protects the column, so the same bytes plan differently.
    crypto.catalog = new DatabaseCatalog([], [])
    expect(crypto.rowDescription(rowDescription()).plan?.decrypts).toBe(false)
    crypto.catalog = new DatabaseCatalog([{ tableOid: TABLE, attnum: 2, column: balance }], [])
    const again = crypto.rowDescription(rowDescription()).plan
    expect(again?.decrypts).toBe(true)
    expect(again).not.toBe(protectedPlan)
  })

  it('keeps working past its size, alternating between more statements than it remembers', () => {
    const crypto = session()
    for (let round = 0; round < 3; round++) {
      for (let t = 0; t < 12; t++) {
        const described = crypto.rowDescription(rowDescription(TABLE + t))
        expect(described.plan?.decrypts).toBe(t === 0)
      }
    }
  })
})

describe('SessionCrypto.planFromStatement reuses the plan of a statement bound again', () => {
  function portal(statement: StatementState, resultFormats: number[]): PortalState {
    return { statement, resultFormats, rowPlan: null, described: false }
  }

  it('gives the same plan for the same result formats, a new one for other formats or after the catalog changed', () => {
    const crypto = session()
    const statement: StatementState = { params: new Map(), searchParams: new Map(), mayReturnProtected: true, copies: [], rowFields: decodeRowDescription(rowDescription()).fields }
    const text = crypto.planFromStatement(portal(statement, []))
    expect(text?.decrypts).toBe(true)
    expect(crypto.planFromStatement(portal(statement, []))).toBe(text)
    // Binary results: the protected cell is opened as raw bytes, so the plan must differ.
    const binary = crypto.planFromStatement(portal(statement, [1]))
    expect(binary).not.toBe(text)
    expect(binary?.fields[1]).toMatchObject({ kind: 'decrypt', binary: true })
    expect(crypto.planFromStatement(portal(statement, [1]))).toBe(binary)
    // DDL: the refreshed catalog no longer protects the column.
    crypto.catalog = new DatabaseCatalog([], [])
    expect(crypto.planFromStatement(portal(statement, [1]))?.decrypts).toBe(false)
    // The plan still decrypts what it should after reuse.
    crypto.catalog = new DatabaseCatalog([{ tableOid: TABLE, attnum: 2, column: balance }], [])
    const again = crypto.planFromStatement(portal(statement, []))!
    const row = dataRow(sealColumnValue(keyring, balance, '99.95'))
    expect(crypto.decryptRow(row, 0, row.length, again)).toBe(true)
    const { buffer, rowStart, position } = crypto.rows
    expect(buffer.subarray(rowStart, position).equals(textRow(['7', '99.95']))).toBe(true)
  })
})
