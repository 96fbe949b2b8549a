/**
 * Backend (server → client) messages. Decoders take the whole frame and return plain
 * objects: strings decoded, binary parts (DataRow cells, SASL data) as views of the frame.
 */
import { decodeNoticeFields, ProtocolError, type ErrorFields } from './errors.js'
import { COPY_DONE, type CopyDataMessage, type CopyDoneMessage, decodeCopyData, decodeCopyDone, encodeCopyData, encodeCopyDone } from './frontend.js'
import { AuthCode, BackendCode, TransactionStatus } from './message-codes.js'
import { type FrameReader, openFrame } from './reader.js'
import { MessageBuilder } from './writer.js'
import { MAX_CANCEL_KEY_LENGTH, MIN_CANCEL_KEY_LENGTH } from './startup.js'

export { COPY_DONE, decodeCopyData, decodeCopyDone, encodeCopyData, encodeCopyDone }
export type { CopyDataMessage, CopyDoneMessage }

export interface AuthenticationOkMessage { type: 'AuthenticationOk' }
export interface AuthenticationCleartextPasswordMessage { type: 'AuthenticationCleartextPassword' }
export interface AuthenticationMD5PasswordMessage { type: 'AuthenticationMD5Password'; salt: Buffer }
export interface AuthenticationSASLMessage { type: 'AuthenticationSASL'; mechanisms: string[] }
export interface AuthenticationSASLContinueMessage { type: 'AuthenticationSASLContinue'; data: Buffer }
export interface AuthenticationSASLFinalMessage { type: 'AuthenticationSASLFinal'; data: Buffer }
export type GSSAuthCode = typeof AuthCode.GSS | typeof AuthCode.GSSContinue | typeof AuthCode.SSPI
/** AuthenticationGSS, AuthenticationGSSContinue and AuthenticationSSPI; pgveil only relays them. */
export interface AuthenticationGSSMessage { type: 'AuthenticationGSS'; code: GSSAuthCode; data: Buffer }
export type AuthenticationMessage =
  | AuthenticationOkMessage
  | AuthenticationCleartextPasswordMessage
  | AuthenticationMD5PasswordMessage
  | AuthenticationSASLMessage
  | AuthenticationSASLContinueMessage
  | AuthenticationSASLFinalMessage
  | AuthenticationGSSMessage

export interface ParameterStatusMessage { type: 'ParameterStatus'; name: string; value: string }
export interface BackendKeyDataMessage { type: 'BackendKeyData'; processId: number; secretKey: Buffer }
export type TransactionStatusChar = 'I' | 'T' | 'E'
export interface ReadyForQueryMessage { type: 'ReadyForQuery'; status: TransactionStatusChar }
export interface FieldDescription {
  name: string
  tableOid: number
  columnAttr: number
  typeOid: number
  typeSize: number
  typeModifier: number
  format: number
}
export interface RowDescriptionMessage { type: 'RowDescription'; fields: FieldDescription[] }
export interface ParameterDescriptionMessage { type: 'ParameterDescription'; typeOids: number[] }
export interface DataRowMessage { type: 'DataRow'; values: (Buffer | null)[] }
export interface CommandCompleteMessage { type: 'CommandComplete'; tag: string }
export interface EmptyQueryResponseMessage { type: 'EmptyQueryResponse' }
/** Field type byte (as a one-character string) → value. */
export interface ErrorResponseMessage { type: 'ErrorResponse'; fields: Map<string, string> }
export interface NoticeResponseMessage { type: 'NoticeResponse'; fields: Map<string, string> }
export interface NotificationResponseMessage { type: 'NotificationResponse'; processId: number; channel: string; payload: string }
export interface CopyResponseFields { format: number; columnFormats: number[] }
export interface CopyInResponseMessage extends CopyResponseFields { type: 'CopyInResponse' }
export interface CopyOutResponseMessage extends CopyResponseFields { type: 'CopyOutResponse' }
export interface CopyBothResponseMessage extends CopyResponseFields { type: 'CopyBothResponse' }
export interface ParseCompleteMessage { type: 'ParseComplete' }
export interface BindCompleteMessage { type: 'BindComplete' }
export interface CloseCompleteMessage { type: 'CloseComplete' }
export interface NoDataMessage { type: 'NoData' }
export interface PortalSuspendedMessage { type: 'PortalSuspended' }
export interface FunctionCallResponseMessage { type: 'FunctionCallResponse'; result: Buffer | null }
export interface NegotiateProtocolVersionMessage { type: 'NegotiateProtocolVersion'; newestMinor: number; unrecognized: string[] }

export type BackendMessage =
  | AuthenticationMessage
  | ParameterStatusMessage
  | BackendKeyDataMessage
  | ReadyForQueryMessage
  | RowDescriptionMessage
  | ParameterDescriptionMessage
  | DataRowMessage
  | CommandCompleteMessage
  | EmptyQueryResponseMessage
  | ErrorResponseMessage
  | NoticeResponseMessage
  | NotificationResponseMessage
  | CopyInResponseMessage
  | CopyOutResponseMessage
  | CopyBothResponseMessage
  | CopyDataMessage
  | CopyDoneMessage
  | ParseCompleteMessage
  | BindCompleteMessage
  | CloseCompleteMessage
  | NoDataMessage
  | PortalSuspendedMessage
  | FunctionCallResponseMessage
  | NegotiateProtocolVersionMessage

function codeOnly(code: number): Buffer {
  return Buffer.from([code, 0, 0, 0, 4])
}

function readyForQuery(status: number): Buffer {
  return Buffer.from([BackendCode.ReadyForQuery, 0, 0, 0, 5, status])
}

export const PARSE_COMPLETE = codeOnly(BackendCode.ParseComplete)
export const BIND_COMPLETE = codeOnly(BackendCode.BindComplete)
export const CLOSE_COMPLETE = codeOnly(BackendCode.CloseComplete)
export const NO_DATA = codeOnly(BackendCode.NoData)
export const PORTAL_SUSPENDED = codeOnly(BackendCode.PortalSuspended)
export const EMPTY_QUERY_RESPONSE = codeOnly(BackendCode.EmptyQueryResponse)
export const READY_FOR_QUERY_IDLE = readyForQuery(TransactionStatus.Idle)
export const READY_FOR_QUERY_IN_TRANSACTION = readyForQuery(TransactionStatus.InTransaction)
export const READY_FOR_QUERY_FAILED = readyForQuery(TransactionStatus.Failed)
export const AUTHENTICATION_OK = Buffer.from([BackendCode.Authentication, 0, 0, 0, 8, 0, 0, 0, AuthCode.Ok])
export const AUTHENTICATION_CLEARTEXT_PASSWORD = Buffer.from([BackendCode.Authentication, 0, 0, 0, 8, 0, 0, 0, AuthCode.CleartextPassword])

const builder = new MessageBuilder()

/** Transaction status byte of a ReadyForQuery frame (compare with TransactionStatus). */
export function readyForQueryStatus(frame: Buffer): number {
  if (frame.length !== 6) throw new ProtocolError(`malformed ReadyForQuery message: ${frame.length} bytes instead of 6`)
  return frame[5]!
}

/** Request code of an Authentication frame (compare with AuthCode). */
export function authenticationCode(frame: Buffer): number {
  if (frame.length < 9) throw new ProtocolError(`malformed Authentication message: ${frame.length} bytes, at least 9 needed`)
  return frame.readInt32BE(5)
}

export function decodeBackendMessage(frame: Buffer): BackendMessage {
  if (frame.length === 0) throw new ProtocolError('empty backend message')
  const code = frame[0]!
  switch (code) {
    case BackendCode.Authentication: return decodeAuthentication(frame)
    case BackendCode.ParameterStatus: return decodeParameterStatus(frame)
    case BackendCode.BackendKeyData: return decodeBackendKeyData(frame)
    case BackendCode.ReadyForQuery: return decodeReadyForQuery(frame)
    case BackendCode.RowDescription: return decodeRowDescription(frame)
    case BackendCode.ParameterDescription: return decodeParameterDescription(frame)
    case BackendCode.DataRow: return decodeDataRow(frame)
    case BackendCode.CommandComplete: return decodeCommandComplete(frame)
    case BackendCode.EmptyQueryResponse: return decodeEmptyQueryResponse(frame)
    case BackendCode.ErrorResponse: return decodeErrorResponse(frame)
    case BackendCode.NoticeResponse: return decodeNoticeResponse(frame)
    case BackendCode.NotificationResponse: return decodeNotificationResponse(frame)
    case BackendCode.CopyInResponse: return decodeCopyInResponse(frame)
    case BackendCode.CopyOutResponse: return decodeCopyOutResponse(frame)
    case BackendCode.CopyBothResponse: return decodeCopyBothResponse(frame)
    case BackendCode.CopyData: return decodeCopyData(frame)
    case BackendCode.CopyDone: return decodeCopyDone(frame)
    case BackendCode.ParseComplete: return decodeParseComplete(frame)
    case BackendCode.BindComplete: return decodeBindComplete(frame)
    case BackendCode.CloseComplete: return decodeCloseComplete(frame)
    case BackendCode.NoData: return decodeNoData(frame)
    case BackendCode.PortalSuspended: return decodePortalSuspended(frame)
    case BackendCode.FunctionCallResponse: return decodeFunctionCallResponse(frame)
    case BackendCode.NegotiateProtocolVersion: return decodeNegotiateProtocolVersion(frame)
    default:
      throw new ProtocolError(`invalid backend message type ${code} (${JSON.stringify(String.fromCharCode(code))})`)
  }
}

export function decodeAuthentication(frame: Buffer): AuthenticationMessage {
  const reader = openFrame(frame, BackendCode.Authentication, 'Authentication')
  const code = reader.int32()
  switch (code) {
    case AuthCode.Ok:
      reader.end()
      return { type: 'AuthenticationOk' }
    case AuthCode.CleartextPassword:
      reader.end()
      return { type: 'AuthenticationCleartextPassword' }
    case AuthCode.MD5Password: {
      const salt = reader.bytes(4)
      reader.end()
      return { type: 'AuthenticationMD5Password', salt }
    }
    case AuthCode.SASL: {
      const mechanisms: string[] = []
      for (;;) {
        const mechanism = reader.cstring()
        if (mechanism === '') break
        mechanisms.push(mechanism)
      }
      reader.end()
      return { type: 'AuthenticationSASL', mechanisms }
    }
    case AuthCode.SASLContinue:
      return { type: 'AuthenticationSASLContinue', data: reader.rest() }
    case AuthCode.SASLFinal:
      return { type: 'AuthenticationSASLFinal', data: reader.rest() }
    case AuthCode.GSS:
    case AuthCode.GSSContinue:
    case AuthCode.SSPI:
      return { type: 'AuthenticationGSS', code, data: reader.rest() }
    default:
      throw reader.error(`unsupported authentication request ${code}`)
  }
}

export function decodeParameterStatus(frame: Buffer): ParameterStatusMessage {
  const reader = openFrame(frame, BackendCode.ParameterStatus, 'ParameterStatus')
  const name = reader.cstring()
  const value = reader.cstring()
  reader.end()
  return { type: 'ParameterStatus', name, value }
}

export function decodeBackendKeyData(frame: Buffer): BackendKeyDataMessage {
  const reader = openFrame(frame, BackendCode.BackendKeyData, 'BackendKeyData')
  const processId = reader.int32()
  const keyLength = reader.remaining()
  if (keyLength < MIN_CANCEL_KEY_LENGTH || keyLength > MAX_CANCEL_KEY_LENGTH) {
    throw reader.error(`cancel key of ${keyLength} bytes (allowed ${MIN_CANCEL_KEY_LENGTH} to ${MAX_CANCEL_KEY_LENGTH})`)
  }
  return { type: 'BackendKeyData', processId, secretKey: reader.rest() }
}

export function decodeReadyForQuery(frame: Buffer): ReadyForQueryMessage {
  const reader = openFrame(frame, BackendCode.ReadyForQuery, 'ReadyForQuery')
  const status = reader.int8()
  reader.end()
  if (status !== TransactionStatus.Idle && status !== TransactionStatus.InTransaction && status !== TransactionStatus.Failed) {
    throw reader.error(`invalid transaction status ${JSON.stringify(String.fromCharCode(status))}`)
  }
  return { type: 'ReadyForQuery', status: String.fromCharCode(status) as TransactionStatusChar }
}

export function decodeRowDescription(frame: Buffer): RowDescriptionMessage {
  const reader = openFrame(frame, BackendCode.RowDescription, 'RowDescription')
  const count = reader.uint16()
  const fields = new Array<FieldDescription>(count)
  for (let i = 0; i < count; i++) {
    fields[i] = {
      name: reader.cstring(),
      tableOid: reader.uint32(),
      columnAttr: reader.int16(),
      typeOid: reader.uint32(),
      typeSize: reader.int16(),
      typeModifier: reader.int32(),
      format: reader.format(),
    }
  }
  reader.end()
  return { type: 'RowDescription', fields }
}

export function decodeParameterDescription(frame: Buffer): ParameterDescriptionMessage {
  const reader = openFrame(frame, BackendCode.ParameterDescription, 'ParameterDescription')
  const count = reader.uint16()
  const typeOids = new Array<number>(count)
  for (let i = 0; i < count; i++) typeOids[i] = reader.uint32()
  reader.end()
  return { type: 'ParameterDescription', typeOids }
}

export function decodeDataRow(frame: Buffer): DataRowMessage {
  const reader = openFrame(frame, BackendCode.DataRow, 'DataRow')
  const count = reader.uint16()
  const values = new Array<Buffer | null>(count)
  for (let i = 0; i < count; i++) values[i] = reader.nullableBytes()
  reader.end()
  return { type: 'DataRow', values }
}

export function decodeCommandComplete(frame: Buffer): CommandCompleteMessage {
  const reader = openFrame(frame, BackendCode.CommandComplete, 'CommandComplete')
  const tag = reader.cstring()
  reader.end()
  return { type: 'CommandComplete', tag }
}

export function decodeEmptyQueryResponse(frame: Buffer): EmptyQueryResponseMessage {
  openFrame(frame, BackendCode.EmptyQueryResponse, 'EmptyQueryResponse').end()
  return { type: 'EmptyQueryResponse' }
}

export function decodeErrorResponse(frame: Buffer): ErrorResponseMessage {
  return { type: 'ErrorResponse', fields: readNoticeFields(frame, BackendCode.ErrorResponse, 'ErrorResponse') }
}

export function decodeNoticeResponse(frame: Buffer): NoticeResponseMessage {
  return { type: 'NoticeResponse', fields: readNoticeFields(frame, BackendCode.NoticeResponse, 'NoticeResponse') }
}

function readNoticeFields(frame: Buffer, code: number, name: string): Map<string, string> {
  const reader = openFrame(frame, code, name)
  for (;;) {
    if (reader.int8() === 0) break
    reader.cstring()
  }
  reader.end()
  return decodeNoticeFields(frame)
}

export function decodeNotificationResponse(frame: Buffer): NotificationResponseMessage {
  const reader = openFrame(frame, BackendCode.NotificationResponse, 'NotificationResponse')
  const processId = reader.int32()
  const channel = reader.cstring()
  const payload = reader.cstring()
  reader.end()
  return { type: 'NotificationResponse', processId, channel, payload }
}

export function decodeCopyInResponse(frame: Buffer): CopyInResponseMessage {
  return { type: 'CopyInResponse', ...readCopyResponse(openFrame(frame, BackendCode.CopyInResponse, 'CopyInResponse')) }
}

export function decodeCopyOutResponse(frame: Buffer): CopyOutResponseMessage {
  return { type: 'CopyOutResponse', ...readCopyResponse(openFrame(frame, BackendCode.CopyOutResponse, 'CopyOutResponse')) }
}

export function decodeCopyBothResponse(frame: Buffer): CopyBothResponseMessage {
  return { type: 'CopyBothResponse', ...readCopyResponse(openFrame(frame, BackendCode.CopyBothResponse, 'CopyBothResponse')) }
}

function readCopyResponse(reader: FrameReader): CopyResponseFields {
  const format = reader.int8()
  if (format !== 0 && format !== 1) throw reader.error(`unsupported copy format ${format}`)
  const count = reader.uint16()
  const columnFormats = new Array<number>(count)
  for (let i = 0; i < count; i++) columnFormats[i] = reader.format()
  reader.end()
  return { format, columnFormats }
}

export function decodeParseComplete(frame: Buffer): ParseCompleteMessage {
  openFrame(frame, BackendCode.ParseComplete, 'ParseComplete').end()
  return { type: 'ParseComplete' }
}

export function decodeBindComplete(frame: Buffer): BindCompleteMessage {
  openFrame(frame, BackendCode.BindComplete, 'BindComplete').end()
  return { type: 'BindComplete' }
}

export function decodeCloseComplete(frame: Buffer): CloseCompleteMessage {
  openFrame(frame, BackendCode.CloseComplete, 'CloseComplete').end()
  return { type: 'CloseComplete' }
}

export function decodeNoData(frame: Buffer): NoDataMessage {
  openFrame(frame, BackendCode.NoData, 'NoData').end()
  return { type: 'NoData' }
}

export function decodePortalSuspended(frame: Buffer): PortalSuspendedMessage {
  openFrame(frame, BackendCode.PortalSuspended, 'PortalSuspended').end()
  return { type: 'PortalSuspended' }
}

export function decodeFunctionCallResponse(frame: Buffer): FunctionCallResponseMessage {
  const reader = openFrame(frame, BackendCode.FunctionCallResponse, 'FunctionCallResponse')
  const result = reader.nullableBytes()
  reader.end()
  return { type: 'FunctionCallResponse', result }
}

export function decodeNegotiateProtocolVersion(frame: Buffer): NegotiateProtocolVersionMessage {
  const reader = openFrame(frame, BackendCode.NegotiateProtocolVersion, 'NegotiateProtocolVersion')
  const newestMinor = reader.int32()
  const count = reader.int32()
  if (count < 0) throw reader.error(`invalid option count ${count}`)
  const unrecognized: string[] = []
  for (let i = 0; i < count; i++) unrecognized.push(reader.cstring())
  reader.end()
  return { type: 'NegotiateProtocolVersion', newestMinor, unrecognized }
}

export function encodeAuthenticationOk(): Buffer {
  return AUTHENTICATION_OK
}

export function encodeAuthenticationCleartextPassword(): Buffer {
  return AUTHENTICATION_CLEARTEXT_PASSWORD
}

export function encodeAuthenticationMD5Password(salt: Uint8Array): Buffer {
  if (salt.length !== 4) throw new RangeError(`an MD5 salt is 4 bytes, got ${salt.length}`)
  return builder.int32(AuthCode.MD5Password).bytes(salt).frame(BackendCode.Authentication)
}

export function encodeAuthenticationSASL(mechanisms: readonly string[]): Buffer {
  builder.int32(AuthCode.SASL)
  for (const mechanism of mechanisms) {
    if (mechanism === '') {
      builder.discard()
      throw new RangeError('a SASL mechanism name cannot be empty')
    }
    builder.cstring(mechanism)
  }
  return builder.int8(0).frame(BackendCode.Authentication)
}

export function encodeAuthenticationSASLContinue(data: Uint8Array): Buffer {
  return builder.int32(AuthCode.SASLContinue).bytes(data).frame(BackendCode.Authentication)
}

export function encodeAuthenticationSASLFinal(data: Uint8Array): Buffer {
  return builder.int32(AuthCode.SASLFinal).bytes(data).frame(BackendCode.Authentication)
}

export function encodeAuthenticationGSS(code: GSSAuthCode, data: Uint8Array): Buffer {
  return builder.int32(code).bytes(data).frame(BackendCode.Authentication)
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  return builder.cstring(name).cstring(value).frame(BackendCode.ParameterStatus)
}

export function encodeBackendKeyData(processId: number, secretKey: Uint8Array): Buffer {
  if (secretKey.length < MIN_CANCEL_KEY_LENGTH || secretKey.length > MAX_CANCEL_KEY_LENGTH) {
    throw new RangeError(`cancel key must be ${MIN_CANCEL_KEY_LENGTH} to ${MAX_CANCEL_KEY_LENGTH} bytes, got ${secretKey.length}`)
  }
  return builder.int32(processId).bytes(secretKey).frame(BackendCode.BackendKeyData)
}

export function encodeReadyForQuery(status: TransactionStatusChar): Buffer {
  switch (status) {
    case 'I': return READY_FOR_QUERY_IDLE
    case 'T': return READY_FOR_QUERY_IN_TRANSACTION
    case 'E': return READY_FOR_QUERY_FAILED
  }
}

export function encodeRowDescription(fields: readonly FieldDescription[]): Buffer {
  builder.int16(fields.length)
  for (const field of fields) {
    builder
      .cstring(field.name)
      .int32(field.tableOid)
      .int16(field.columnAttr)
      .int32(field.typeOid)
      .int16(field.typeSize)
      .int32(field.typeModifier)
      .int16(field.format)
  }
  return builder.frame(BackendCode.RowDescription)
}

export function encodeParameterDescription(typeOids: readonly number[]): Buffer {
  builder.int16(typeOids.length)
  for (const oid of typeOids) builder.int32(oid)
  return builder.frame(BackendCode.ParameterDescription)
}

export function encodeDataRow(values: readonly (Uint8Array | null)[]): Buffer {
  builder.int16(values.length)
  for (const value of values) {
    if (value === null) builder.int32(-1)
    else builder.int32(value.length).bytes(value)
  }
  return builder.frame(BackendCode.DataRow)
}

export function encodeCommandComplete(tag: string): Buffer {
  return builder.cstring(tag).frame(BackendCode.CommandComplete)
}

export function encodeEmptyQueryResponse(): Buffer {
  return EMPTY_QUERY_RESPONSE
}

/** ErrorResponse of an error pgveil raises itself (S, V, C, M, then D and H when set). */
export function encodeErrorResponse(fields: ErrorFields): Buffer {
  return encodeErrorResponseFields(fieldMap(fields))
}

/** NoticeResponse of a warning or notice pgveil raises itself (fields as for encodeErrorResponse). */
export function encodeNoticeResponse(fields: ErrorFields): Buffer {
  return encodeNoticeResponseFields(fieldMap(fields))
}

function fieldMap(fields: ErrorFields): Map<string, string> {
  const map = new Map([['S', fields.severity], ['V', fields.severity], ['C', fields.code], ['M', fields.message]])
  if (fields.detail !== undefined) map.set('D', fields.detail)
  if (fields.hint !== undefined) map.set('H', fields.hint)
  return map
}

/** ErrorResponse from decoded fields. */
export function encodeErrorResponseFields(fields: ReadonlyMap<string, string>): Buffer {
  return encodeNoticeFields(fields, BackendCode.ErrorResponse)
}

export function encodeNoticeResponseFields(fields: ReadonlyMap<string, string>): Buffer {
  return encodeNoticeFields(fields, BackendCode.NoticeResponse)
}

function encodeNoticeFields(fields: ReadonlyMap<string, string>, code: number): Buffer {
  for (const [type, value] of fields) {
    if (type.length !== 1 || type === '\0') {
      builder.discard()
      throw new RangeError(`a notice field type is one non-NUL character, got ${JSON.stringify(type)}`)
    }
    builder.int8(type.charCodeAt(0)).cstring(value)
  }
  return builder.int8(0).frame(code)
}

export function encodeNotificationResponse(message: { processId: number; channel: string; payload: string }): Buffer {
  return builder.int32(message.processId).cstring(message.channel).cstring(message.payload).frame(BackendCode.NotificationResponse)
}

export function encodeCopyInResponse(message: CopyResponseFields): Buffer {
  return encodeCopyResponse(message, BackendCode.CopyInResponse)
}

export function encodeCopyOutResponse(message: CopyResponseFields): Buffer {
  return encodeCopyResponse(message, BackendCode.CopyOutResponse)
}

export function encodeCopyBothResponse(message: CopyResponseFields): Buffer {
  return encodeCopyResponse(message, BackendCode.CopyBothResponse)
}

function encodeCopyResponse(message: CopyResponseFields, code: number): Buffer {
  builder.int8(message.format).int16(message.columnFormats.length)
  for (const format of message.columnFormats) builder.int16(format)
  return builder.frame(code)
}

export function encodeParseComplete(): Buffer {
  return PARSE_COMPLETE
}

export function encodeBindComplete(): Buffer {
  return BIND_COMPLETE
}

export function encodeCloseComplete(): Buffer {
  return CLOSE_COMPLETE
}

export function encodeNoData(): Buffer {
  return NO_DATA
}

export function encodePortalSuspended(): Buffer {
  return PORTAL_SUSPENDED
}

export function encodeFunctionCallResponse(result: Uint8Array | null): Buffer {
  if (result === null) builder.int32(-1)
  else builder.int32(result.length).bytes(result)
  return builder.frame(BackendCode.FunctionCallResponse)
}

export function encodeNegotiateProtocolVersion(message: { newestMinor: number; unrecognized: readonly string[] }): Buffer {
  builder.int32(message.newestMinor).int32(message.unrecognized.length)
  for (const option of message.unrecognized) builder.cstring(option)
  return builder.frame(BackendCode.NegotiateProtocolVersion)
}

/** Encode any decoded backend message. */
export function encodeBackendMessage(message: BackendMessage): Buffer {
  switch (message.type) {
    case 'AuthenticationOk': return AUTHENTICATION_OK
    case 'AuthenticationCleartextPassword': return AUTHENTICATION_CLEARTEXT_PASSWORD
    case 'AuthenticationMD5Password': return encodeAuthenticationMD5Password(message.salt)
    case 'AuthenticationSASL': return encodeAuthenticationSASL(message.mechanisms)
    case 'AuthenticationSASLContinue': return encodeAuthenticationSASLContinue(message.data)
    case 'AuthenticationSASLFinal': return encodeAuthenticationSASLFinal(message.data)
    case 'AuthenticationGSS': return encodeAuthenticationGSS(message.code, message.data)
    case 'ParameterStatus': return encodeParameterStatus(message.name, message.value)
    case 'BackendKeyData': return encodeBackendKeyData(message.processId, message.secretKey)
    case 'ReadyForQuery': return encodeReadyForQuery(message.status)
    case 'RowDescription': return encodeRowDescription(message.fields)
    case 'ParameterDescription': return encodeParameterDescription(message.typeOids)
    case 'DataRow': return encodeDataRow(message.values)
    case 'CommandComplete': return encodeCommandComplete(message.tag)
    case 'EmptyQueryResponse': return EMPTY_QUERY_RESPONSE
    case 'ErrorResponse': return encodeErrorResponseFields(message.fields)
    case 'NoticeResponse': return encodeNoticeResponseFields(message.fields)
    case 'NotificationResponse': return encodeNotificationResponse(message)
    case 'CopyInResponse': return encodeCopyInResponse(message)
    case 'CopyOutResponse': return encodeCopyOutResponse(message)
    case 'CopyBothResponse': return encodeCopyBothResponse(message)
    case 'CopyData': return encodeCopyData(message.data)
    case 'CopyDone': return COPY_DONE
    case 'ParseComplete': return PARSE_COMPLETE
    case 'BindComplete': return BIND_COMPLETE
    case 'CloseComplete': return CLOSE_COMPLETE
    case 'NoData': return NO_DATA
    case 'PortalSuspended': return PORTAL_SUSPENDED
    case 'FunctionCallResponse': return encodeFunctionCallResponse(message.result)
    case 'NegotiateProtocolVersion': return encodeNegotiateProtocolVersion(message)
  }
}
