import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { Parser } from 'pg-protocol/dist/parser.js'
import {
  AUTHENTICATION_OK,
  BIND_COMPLETE,
  CLOSE_COMPLETE,
  EMPTY_QUERY_RESPONSE,
  NO_DATA,
  PARSE_COMPLETE,
  PORTAL_SUSPENDED,
  READY_FOR_QUERY_FAILED,
  READY_FOR_QUERY_IDLE,
  READY_FOR_QUERY_IN_TRANSACTION,
  type BackendMessage,
  type FieldDescription,
  authenticationCode,
  decodeAuthentication,
  decodeBackendKeyData,
  decodeBackendMessage,
  decodeCopyInResponse,
  decodeDataRow,
  decodeErrorResponse,
  decodeReadyForQuery,
  decodeRowDescription,
  encodeAuthenticationCleartextPassword,
  encodeAuthenticationGSS,
  encodeAuthenticationMD5Password,
  encodeAuthenticationOk,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeAuthenticationSASLFinal,
  encodeBackendKeyData,
  encodeBackendMessage,
  encodeBindComplete,
  encodeCloseComplete,
  encodeCommandComplete,
  encodeCopyBothResponse,
  encodeCopyData,
  encodeCopyDone,
  encodeCopyInResponse,
  encodeCopyOutResponse,
  encodeDataRow,
  encodeEmptyQueryResponse,
  encodeErrorResponseFields,
  encodeFunctionCallResponse,
  encodeNegotiateProtocolVersion,
  encodeNoData,
  encodeErrorResponse,
  encodeNoticeResponseFields,
  encodeNotificationResponse,
  encodeParameterDescription,
  encodeParameterStatus,
  encodeParseComplete,
  encodePortalSuspended,
  encodeReadyForQuery,
  encodeRowDescription,
  readyForQueryStatus,
} from '../../protocol/backend.js'
import { AuthCode, TransactionStatus } from '../../protocol/message-codes.js'
import { ascii, expectProtocolError, wire } from './wire-bytes.js'


/** pg-protocol's own parse of one backend frame, as an independent oracle. */
function oracle(frame: Buffer): Record<string, unknown> {
  const parsed: Record<string, unknown>[] = []
  new Parser().parse(frame, (message) => parsed.push(message as unknown as Record<string, unknown>))
  expect(parsed).toHaveLength(1)
  return parsed[0]!
}

const idField: FieldDescription = { name: 'id', tableOid: 16384, columnAttr: 1, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }
const nameField: FieldDescription = { name: 'name', tableOid: 16384, columnAttr: 2, typeOid: 25, typeSize: -1, typeModifier: -1, format: 1 }

/** [description, literal frame, decoded message, our encoder's output] */
const cases: [string, Buffer, BackendMessage, () => Buffer][] = [
  ['AuthenticationOk', wire('52 00000008 00000000'), { type: 'AuthenticationOk' }, encodeAuthenticationOk],
  ['AuthenticationCleartextPassword', wire('52 00000008 00000003'), { type: 'AuthenticationCleartextPassword' }, encodeAuthenticationCleartextPassword],
  [
    'AuthenticationMD5Password',
    wire('52 0000000c 00000005 01020304'),
    { type: 'AuthenticationMD5Password', salt: Buffer.from([1, 2, 3, 4]) },
    () => encodeAuthenticationMD5Password(Buffer.from([1, 2, 3, 4])),
  ],
  [
    'AuthenticationSASL',
    wire('52 0000002a 0000000a', ascii('SCRAM-SHA-256'), '00', ascii('SCRAM-SHA-256-PLUS'), '00', '00'),
    { type: 'AuthenticationSASL', mechanisms: ['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS'] },
    () => encodeAuthenticationSASL(['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']),
  ],
  [
    'AuthenticationSASLContinue',
    wire('52 0000001a 0000000b', ascii('r=abc,s=xyz,i=4096')),
    { type: 'AuthenticationSASLContinue', data: ascii('r=abc,s=xyz,i=4096') },
    () => encodeAuthenticationSASLContinue(ascii('r=abc,s=xyz,i=4096')),
  ],
  [
    'AuthenticationSASLFinal',
    wire('52 0000000d 0000000c', ascii('v=abc')),
    { type: 'AuthenticationSASLFinal', data: ascii('v=abc') },
    () => encodeAuthenticationSASLFinal(ascii('v=abc')),
  ],
  ['AuthenticationGSS', wire('52 00000008 00000007'), { type: 'AuthenticationGSS', code: 7, data: Buffer.alloc(0) }, () => encodeAuthenticationGSS(7, Buffer.alloc(0))],
  [
    'AuthenticationGSSContinue',
    wire('52 0000000b 00000008 aabbcc'),
    { type: 'AuthenticationGSS', code: 8, data: Buffer.from([0xaa, 0xbb, 0xcc]) },
    () => encodeAuthenticationGSS(8, Buffer.from([0xaa, 0xbb, 0xcc])),
  ],
  ['AuthenticationSSPI', wire('52 00000008 00000009'), { type: 'AuthenticationGSS', code: 9, data: Buffer.alloc(0) }, () => encodeAuthenticationGSS(9, Buffer.alloc(0))],
  [
    'ParameterStatus',
    wire('53 00000019', ascii('client_encoding'), '00', ascii('UTF8'), '00'),
    { type: 'ParameterStatus', name: 'client_encoding', value: 'UTF8' },
    () => encodeParameterStatus('client_encoding', 'UTF8'),
  ],
  [
    'BackendKeyData (3.0, 4-byte key)',
    wire('4b 0000000c 00001092 deadbeef'),
    { type: 'BackendKeyData', processId: 4242, secretKey: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
    () => encodeBackendKeyData(4242, Buffer.from([0xde, 0xad, 0xbe, 0xef])),
  ],
  [
    'BackendKeyData (3.2, 32-byte key)',
    wire('4b 00000028 00000001', Buffer.alloc(32, 7)),
    { type: 'BackendKeyData', processId: 1, secretKey: Buffer.alloc(32, 7) },
    () => encodeBackendKeyData(1, Buffer.alloc(32, 7)),
  ],
  ['ReadyForQuery idle', wire('5a 00000005 49'), { type: 'ReadyForQuery', status: 'I' }, () => encodeReadyForQuery('I')],
  ['ReadyForQuery in transaction', wire('5a 00000005 54'), { type: 'ReadyForQuery', status: 'T' }, () => encodeReadyForQuery('T')],
  ['ReadyForQuery failed', wire('5a 00000005 45'), { type: 'ReadyForQuery', status: 'E' }, () => encodeReadyForQuery('E')],
  [
    'RowDescription',
    wire(
      '54 00000032 0002',
      ascii('id'), '00', '00004000 0001 00000017 0004 ffffffff 0000',
      ascii('name'), '00', '00004000 0002 00000019 ffff ffffffff 0001',
    ),
    { type: 'RowDescription', fields: [idField, nameField] },
    () => encodeRowDescription([idField, nameField]),
  ],
  ['RowDescription without columns', wire('54 00000006 0000'), { type: 'RowDescription', fields: [] }, () => encodeRowDescription([])],
  [
    'ParameterDescription',
    wire('74 0000000e 0002 00000017 ffffffff'),
    { type: 'ParameterDescription', typeOids: [23, 4294967295] },
    () => encodeParameterDescription([23, 4294967295]),
  ],
  [
    'DataRow',
    wire('44 00000013 0003 00000001 31 ffffffff 00000000'),
    { type: 'DataRow', values: [ascii('1'), null, Buffer.alloc(0)] },
    () => encodeDataRow([ascii('1'), null, Buffer.alloc(0)]),
  ],
  ['CommandComplete', wire('43 0000000d', ascii('SELECT 1'), '00'), { type: 'CommandComplete', tag: 'SELECT 1' }, () => encodeCommandComplete('SELECT 1')],
  ['EmptyQueryResponse', wire('49 00000004'), { type: 'EmptyQueryResponse' }, encodeEmptyQueryResponse],
  [
    'ErrorResponse',
    wire('45 00000030', '53', ascii('ERROR'), '00', '43', ascii('42P01'), '00', '4d', ascii('relation "x" does not exist'), '00', '00'),
    { type: 'ErrorResponse', fields: new Map([['S', 'ERROR'], ['C', '42P01'], ['M', 'relation "x" does not exist']]) },
    () => encodeErrorResponseFields(new Map([['S', 'ERROR'], ['C', '42P01'], ['M', 'relation "x" does not exist']])),
  ],
  [
    'NoticeResponse',
    wire('4e 00000011', '53', ascii('NOTICE'), '00', '4d', ascii('hi'), '00', '00'),
    { type: 'NoticeResponse', fields: new Map([['S', 'NOTICE'], ['M', 'hi']]) },
    () => encodeNoticeResponseFields(new Map([['S', 'NOTICE'], ['M', 'hi']])),
  ],
  [
    'NotificationResponse',
    wire('41 00000015 00000457', ascii('chan'), '00', ascii('payload'), '00'),
    { type: 'NotificationResponse', processId: 1111, channel: 'chan', payload: 'payload' },
    () => encodeNotificationResponse({ processId: 1111, channel: 'chan', payload: 'payload' }),
  ],
  [
    'CopyInResponse',
    wire('47 0000000b 00 0002 0000 0000'),
    { type: 'CopyInResponse', format: 0, columnFormats: [0, 0] },
    () => encodeCopyInResponse({ format: 0, columnFormats: [0, 0] }),
  ],
  [
    'CopyOutResponse',
    wire('48 0000000b 01 0002 0001 0001'),
    { type: 'CopyOutResponse', format: 1, columnFormats: [1, 1] },
    () => encodeCopyOutResponse({ format: 1, columnFormats: [1, 1] }),
  ],
  ['CopyBothResponse', wire('57 00000007 00 0000'), { type: 'CopyBothResponse', format: 0, columnFormats: [] }, () => encodeCopyBothResponse({ format: 0, columnFormats: [] })],
  ['CopyData', wire('64 00000007 616263'), { type: 'CopyData', data: ascii('abc') }, () => encodeCopyData(ascii('abc'))],
  ['CopyDone', wire('63 00000004'), { type: 'CopyDone' }, encodeCopyDone],
  ['ParseComplete', wire('31 00000004'), { type: 'ParseComplete' }, encodeParseComplete],
  ['BindComplete', wire('32 00000004'), { type: 'BindComplete' }, encodeBindComplete],
  ['CloseComplete', wire('33 00000004'), { type: 'CloseComplete' }, encodeCloseComplete],
  ['NoData', wire('6e 00000004'), { type: 'NoData' }, encodeNoData],
  ['PortalSuspended', wire('73 00000004'), { type: 'PortalSuspended' }, encodePortalSuspended],
  [
    'FunctionCallResponse',
    wire('56 0000000a 00000002 0102'),
    { type: 'FunctionCallResponse', result: Buffer.from([1, 2]) },
    () => encodeFunctionCallResponse(Buffer.from([1, 2])),
  ],
  ['FunctionCallResponse NULL', wire('56 00000008 ffffffff'), { type: 'FunctionCallResponse', result: null }, () => encodeFunctionCallResponse(null)],
  [
    'NegotiateProtocolVersion',
    wire('76 00000015 00000000 00000001', ascii('_pq_.foo'), '00'),
    { type: 'NegotiateProtocolVersion', newestMinor: 0, unrecognized: ['_pq_.foo'] },
    () => encodeNegotiateProtocolVersion({ newestMinor: 0, unrecognized: ['_pq_.foo'] }),
  ],
]

describe('backend messages against literal bytes', () => {
  for (const [label, frame, message, encode] of cases) {
    it(label, () => {
      expect(frame.readUInt32BE(1) + 1).toBe(frame.length)
      expect(decodeBackendMessage(frame)).toEqual(message)
      expect(encode()).toEqual(frame)
      expect(encodeBackendMessage(message)).toEqual(frame)
    })
  }

  it('constant frames', () => {
    expect(AUTHENTICATION_OK).toEqual(wire('52 00000008 00000000'))
    expect(PARSE_COMPLETE).toEqual(wire('31 00000004'))
    expect(BIND_COMPLETE).toEqual(wire('32 00000004'))
    expect(CLOSE_COMPLETE).toEqual(wire('33 00000004'))
    expect(NO_DATA).toEqual(wire('6e 00000004'))
    expect(PORTAL_SUSPENDED).toEqual(wire('73 00000004'))
    expect(EMPTY_QUERY_RESPONSE).toEqual(wire('49 00000004'))
    expect(READY_FOR_QUERY_IDLE).toEqual(wire('5a 00000005 49'))
    expect(READY_FOR_QUERY_IN_TRANSACTION).toEqual(wire('5a 00000005 54'))
    expect(READY_FOR_QUERY_FAILED).toEqual(wire('5a 00000005 45'))
  })

  it('ErrorResponse of a pgveil error decodes to its fields', () => {
    const frame = encodeErrorResponse({ severity: 'FATAL', code: '08P01', message: 'bad', hint: 'fix it' })
    expect(decodeErrorResponse(frame).fields).toEqual(new Map([['S', 'FATAL'], ['V', 'FATAL'], ['C', '08P01'], ['M', 'bad'], ['H', 'fix it']]))
  })

  it('DataRow cells are views of the frame', () => {
    const frame = wire('44 00000012 0002 00000002 6869 00000002 7a7a')
    const [first, second] = decodeDataRow(frame).values
    expect(first!.buffer).toBe(frame.buffer)
    expect(first!.byteOffset).toBe(frame.byteOffset + 11)
    expect(second!.byteOffset).toBe(frame.byteOffset + 17)
    expect(second).toEqual(ascii('zz'))
  })
})

describe('pg-protocol Parser agrees with our decoding', () => {
  const byLabel = new Map(cases.map(([label, frame]) => [label, frame]))
  const frame = (label: string): Buffer => byLabel.get(label)!

  it('authentication', () => {
    expect(oracle(frame('AuthenticationOk')).name).toBe('authenticationOk')
    expect(oracle(frame('AuthenticationCleartextPassword')).name).toBe('authenticationCleartextPassword')
    const md5 = decodeAuthentication(frame('AuthenticationMD5Password'))
    expect(md5.type === 'AuthenticationMD5Password' && md5.salt).toEqual(oracle(frame('AuthenticationMD5Password')).salt)
    const sasl = decodeAuthentication(frame('AuthenticationSASL'))
    expect(sasl.type === 'AuthenticationSASL' && sasl.mechanisms).toEqual(oracle(frame('AuthenticationSASL')).mechanisms)
    const cont = decodeAuthentication(frame('AuthenticationSASLContinue'))
    expect(cont.type === 'AuthenticationSASLContinue' && cont.data.toString()).toBe(oracle(frame('AuthenticationSASLContinue')).data)
    const final = decodeAuthentication(frame('AuthenticationSASLFinal'))
    expect(final.type === 'AuthenticationSASLFinal' && final.data.toString()).toBe(oracle(frame('AuthenticationSASLFinal')).data)
  })

  it('session and query messages', () => {
    expect(oracle(frame('ParameterStatus'))).toMatchObject({ parameterName: 'client_encoding', parameterValue: 'UTF8' })
    const key = decodeBackendKeyData(frame('BackendKeyData (3.0, 4-byte key)'))
    expect(oracle(frame('BackendKeyData (3.0, 4-byte key)'))).toMatchObject({ processID: key.processId, secretKey: key.secretKey.readInt32BE(0) })
    for (const label of ['ReadyForQuery idle', 'ReadyForQuery in transaction', 'ReadyForQuery failed']) {
      expect(oracle(frame(label)).status).toBe(decodeReadyForQuery(frame(label)).status)
    }
    const fields = decodeRowDescription(frame('RowDescription')).fields
    expect(oracle(frame('RowDescription')).fields).toEqual(
      fields.map((f) => ({
        name: f.name,
        tableID: f.tableOid,
        columnID: f.columnAttr,
        dataTypeID: f.typeOid,
        dataTypeSize: f.typeSize,
        dataTypeModifier: f.typeModifier,
        format: f.format === 0 ? 'text' : 'binary',
      })),
    )
    expect(oracle(frame('ParameterDescription')).dataTypeIDs).toEqual([23, 4294967295])
    expect(oracle(frame('DataRow')).fields).toEqual(decodeDataRow(frame('DataRow')).values.map((v) => (v === null ? null : v.toString())))
    expect(oracle(frame('CommandComplete')).text).toBe('SELECT 1')
    expect(oracle(frame('NotificationResponse'))).toMatchObject({ processId: 1111, channel: 'chan', payload: 'payload' })
    expect(oracle(frame('ErrorResponse'))).toMatchObject({ severity: 'ERROR', code: '42P01', message: 'relation "x" does not exist' })
    expect(oracle(frame('NoticeResponse'))).toMatchObject({ severity: 'NOTICE', message: 'hi' })
    const copyIn = decodeCopyInResponse(frame('CopyInResponse'))
    expect(oracle(frame('CopyInResponse'))).toMatchObject({ binary: copyIn.format === 1, columnTypes: copyIn.columnFormats })
    expect(oracle(frame('CopyOutResponse'))).toMatchObject({ binary: true, columnTypes: [1, 1] })
    expect(oracle(frame('CopyData')).chunk).toEqual(ascii('abc'))
    for (const label of ['ParseComplete', 'BindComplete', 'CloseComplete', 'NoData', 'PortalSuspended', 'EmptyQueryResponse', 'CopyDone']) {
      expect(oracle(frame(label)).name).toBe(
        { ParseComplete: 'parseComplete', BindComplete: 'bindComplete', CloseComplete: 'closeComplete', NoData: 'noData', PortalSuspended: 'portalSuspended', EmptyQueryResponse: 'emptyQuery', CopyDone: 'copyDone' }[label],
      )
    }
  })
})

describe('hot-path helpers', () => {
  it('readyForQueryStatus', () => {
    expect(readyForQueryStatus(READY_FOR_QUERY_IDLE)).toBe(TransactionStatus.Idle)
    expect(readyForQueryStatus(wire('5a 00000005 54'))).toBe(TransactionStatus.InTransaction)
    expect(readyForQueryStatus(wire('5a 00000005 45'))).toBe(TransactionStatus.Failed)
    expectProtocolError(() => readyForQueryStatus(wire('5a 00000004')), /malformed ReadyForQuery message: 5 bytes instead of 6/)
  })

  it('authenticationCode', () => {
    expect(authenticationCode(AUTHENTICATION_OK)).toBe(AuthCode.Ok)
    expect(authenticationCode(wire('52 0000000c 00000005 01020304'))).toBe(AuthCode.MD5Password)
    expect(authenticationCode(encodeAuthenticationSASL(['SCRAM-SHA-256']))).toBe(AuthCode.SASL)
    expectProtocolError(() => authenticationCode(wire('52 00000006 0000')), /malformed Authentication message/)
  })
})

const text = fc.string({ unit: 'grapheme', maxLength: 30 }).filter((s) => !s.includes('\0'))
const bytes = fc.uint8Array({ maxLength: 48 }).map((a) => Buffer.from(a))
const format = fc.constantFrom(0, 1)
const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff })
const int16 = fc.integer({ min: -0x8000, max: 0x7fff })
const oid = fc.nat({ max: 0xffffffff })
const noticeFields = fc
  .uniqueArray(fc.tuple(fc.constantFrom('S', 'V', 'C', 'M', 'D', 'H', 'P', 'W', 's', 't', 'c', 'n'), text), { selector: ([type]) => type, maxLength: 8 })
  .map((entries) => new Map(entries))
const copyResponse = fc.record({ format, columnFormats: fc.array(format, { maxLength: 6 }) })

const backendMessage: fc.Arbitrary<BackendMessage> = fc.oneof(
  fc.constantFrom<BackendMessage>(
    { type: 'AuthenticationOk' },
    { type: 'AuthenticationCleartextPassword' },
    { type: 'EmptyQueryResponse' },
    { type: 'CopyDone' },
    { type: 'ParseComplete' },
    { type: 'BindComplete' },
    { type: 'CloseComplete' },
    { type: 'NoData' },
    { type: 'PortalSuspended' },
    { type: 'ReadyForQuery', status: 'I' },
    { type: 'ReadyForQuery', status: 'T' },
    { type: 'ReadyForQuery', status: 'E' },
  ),
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((salt) => ({ type: 'AuthenticationMD5Password' as const, salt: Buffer.from(salt) })),
  fc.array(text.filter((s) => s !== ''), { maxLength: 4 }).map((mechanisms) => ({ type: 'AuthenticationSASL' as const, mechanisms })),
  bytes.map((data) => ({ type: 'AuthenticationSASLContinue' as const, data })),
  bytes.map((data) => ({ type: 'AuthenticationSASLFinal' as const, data })),
  fc.record({ type: fc.constant('AuthenticationGSS' as const), code: fc.constantFrom(7 as const, 8 as const, 9 as const), data: bytes }),
  fc.record({ type: fc.constant('ParameterStatus' as const), name: text, value: text }),
  fc.record({
    type: fc.constant('BackendKeyData' as const),
    processId: int32,
    secretKey: fc.uint8Array({ minLength: 4, maxLength: 256 }).map((a) => Buffer.from(a)),
  }),
  fc
    .array(fc.record({ name: text, tableOid: oid, columnAttr: int16, typeOid: oid, typeSize: int16, typeModifier: int32, format }), { maxLength: 5 })
    .map((fields) => ({ type: 'RowDescription' as const, fields })),
  fc.array(oid, { maxLength: 8 }).map((typeOids) => ({ type: 'ParameterDescription' as const, typeOids })),
  fc.array(fc.option(bytes, { nil: null }), { maxLength: 8 }).map((values) => ({ type: 'DataRow' as const, values })),
  text.map((tag) => ({ type: 'CommandComplete' as const, tag })),
  noticeFields.map((fields) => ({ type: 'ErrorResponse' as const, fields })),
  noticeFields.map((fields) => ({ type: 'NoticeResponse' as const, fields })),
  fc.record({ type: fc.constant('NotificationResponse' as const), processId: int32, channel: text, payload: text }),
  copyResponse.map((c) => ({ type: 'CopyInResponse' as const, ...c })),
  copyResponse.map((c) => ({ type: 'CopyOutResponse' as const, ...c })),
  copyResponse.map((c) => ({ type: 'CopyBothResponse' as const, ...c })),
  bytes.map((data) => ({ type: 'CopyData' as const, data })),
  fc.option(bytes, { nil: null }).map((result) => ({ type: 'FunctionCallResponse' as const, result })),
  fc.record({ type: fc.constant('NegotiateProtocolVersion' as const), newestMinor: fc.nat({ max: 0xffff }), unrecognized: fc.array(text, { maxLength: 4 }) }),
)

describe('round trips', () => {
  it('decodeBackendMessage(encodeBackendMessage(m)) equals m for arbitrary messages', () => {
    fc.assert(
      fc.property(backendMessage, (message) => {
        expect(decodeBackendMessage(encodeBackendMessage(message))).toEqual(message)
      }),
      { numRuns: 1000 },
    )
  })

  it('re-encoding a decoded frame reproduces it byte for byte', () => {
    for (const [, frame] of cases) expect(encodeBackendMessage(decodeBackendMessage(frame))).toEqual(frame)
  })
})

describe('malformed backend messages', () => {
  it('every truncation of a valid message is refused', () => {
    for (const [label, frame] of cases) {
      if (['CopyData', 'AuthenticationSASLContinue', 'AuthenticationSASLFinal', 'AuthenticationGSSContinue'].includes(label)) continue
      if (label.startsWith('BackendKeyData (3.2')) continue // any 4..256-byte key is valid
      for (let cut = 5; cut < frame.length; cut++) {
        const truncated = Buffer.from(frame.subarray(0, cut))
        truncated.writeUInt32BE(cut - 1, 1)
        expectProtocolError(() => decodeBackendMessage(truncated), /^malformed \w+ message: /)
        expectProtocolError(() => decodeBackendMessage(frame.subarray(0, cut)), /length field says/)
      }
    }
  })

  it('bad values', () => {
    expectProtocolError(() => decodeBackendMessage(wire('5a 00000005 58')), /malformed ReadyForQuery message: invalid transaction status "X"/)
    expectProtocolError(() => decodeBackendMessage(wire('52 00000008 00000002')), /malformed Authentication message: unsupported authentication request 2/)
    expectProtocolError(() => decodeBackendMessage(wire('52 0000000c 00000000 00000000')), /malformed Authentication message: 4 unexpected bytes at the end/)
    expectProtocolError(() => decodeBackendMessage(wire('52 0000000d 00000005 0102030405')), /1 unexpected byte/)
    expectProtocolError(() => decodeBackendMessage(wire('47 00000007 02 0000')), /malformed CopyInResponse message: unsupported copy format 2/)
    expectProtocolError(() => decodeBackendMessage(wire('48 00000009 00 0001 0003')), /malformed CopyOutResponse message: unsupported format code 3/)
    expectProtocolError(() => decodeBackendMessage(wire('54 0000001a 0001', ascii('a'), '00', '00000000 0000 00000017 0004 ffffffff 0002')), /malformed RowDescription message: unsupported format code 2/)
    expectProtocolError(() => decodeBackendMessage(wire('44 0000000a 0001 fffffffe')), /malformed DataRow message: invalid value length -2/)
    expectProtocolError(() => decodeBackendMessage(wire('44 0000000b 0001 ffffffff 00')), /malformed DataRow message: 1 unexpected byte at the end/)
    expectProtocolError(() => decodeBackendMessage(wire('44 0000000a 0002 ffffffff')), /malformed DataRow message: int32 at offset 11 runs past/)
    expectProtocolError(() => decodeBackendMessage(wire('56 00000008 fffffff0')), /malformed FunctionCallResponse message: invalid value length -16/)
    expectProtocolError(() => decodeBackendMessage(wire('76 0000000c 00000000 ffffffff')), /malformed NegotiateProtocolVersion message: invalid option count -1/)
    expectProtocolError(() => decodeBackendMessage(wire('4b 0000000b 00000001 010203')), /malformed BackendKeyData message: cancel key of 3 bytes/)
    expectProtocolError(() => decodeBackendMessage(wire('45 00000009', '53', ascii('ERR'), '00')), /malformed ErrorResponse message: byte at offset 10 runs past/)
    expectProtocolError(() => decodeBackendMessage(wire('4e 00000008', '53', ascii('ERR'))), /malformed NoticeResponse message: string at offset 6 is not NUL-terminated/)
    expectProtocolError(() => decodeBackendMessage(wire('43 00000008', ascii('SELE'))), /malformed CommandComplete message: string at offset 5 is not NUL-terminated/)
    expectProtocolError(() => decodeBackendMessage(wire('31 00000005 00')), /malformed ParseComplete message: 1 unexpected byte/)
    expectProtocolError(() => decodeBackendMessage(wire('7a 00000004')), /invalid backend message type 122 \("z"\)/)
  })

  it('encoders refuse values that cannot be encoded, and the shared builder recovers', () => {
    expect(() => encodeAuthenticationMD5Password(Buffer.alloc(3))).toThrow(RangeError)
    expect(() => encodeBackendKeyData(1, Buffer.alloc(257))).toThrow(RangeError)
    expect(() => encodeAuthenticationSASL(['SCRAM-SHA-256', ''])).toThrow(RangeError)
    expect(() => encodeErrorResponseFields(new Map([['S', 'ERROR'], ['MM', 'x']]))).toThrow(RangeError)
    expect(() => encodeCommandComplete('SELECT\0')).toThrow(RangeError)
    expect(encodeCommandComplete('SELECT 1')).toEqual(wire('43 0000000d', ascii('SELECT 1'), '00'))
  })
})
