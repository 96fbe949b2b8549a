/**
 * Frontend (client → server) typed messages. Decoders take the whole frame and return
 * plain objects: strings decoded, binary parts as views of the frame.
 */
import { ProtocolError } from './errors.js'
import { FrontendCode } from './message-codes.js'
import { type FrameReader, openFrame } from './reader.js'
import { MessageBuilder } from './writer.js'

export interface QueryMessage { type: 'Query'; sql: string }
export interface ParseMessage { type: 'Parse'; name: string; sql: string; paramTypes: number[] }
export interface BindMessage {
  type: 'Bind'
  portal: string
  statement: string
  paramFormats: number[]
  params: (Buffer | null)[]
  resultFormats: number[]
}
/** 'S' prepared statement, 'P' portal. */
export type DescribeTarget = 'S' | 'P'
export interface DescribeMessage { type: 'Describe'; target: DescribeTarget; name: string }
export interface ExecuteMessage { type: 'Execute'; portal: string; maxRows: number }
export interface SyncMessage { type: 'Sync' }
export interface FlushMessage { type: 'Flush' }
export interface CloseMessage { type: 'Close'; target: DescribeTarget; name: string }
export interface CopyDataMessage { type: 'CopyData'; data: Buffer }
export interface CopyDoneMessage { type: 'CopyDone' }
export interface CopyFailMessage { type: 'CopyFail'; message: string }
export interface FunctionCallMessage {
  type: 'FunctionCall'
  functionOid: number
  argFormats: number[]
  args: (Buffer | null)[]
  resultFormat: number
}
export interface TerminateMessage { type: 'Terminate' }

/** Every frontend message whose type byte alone says what it is. */
export type FrontendMessage =
  | QueryMessage
  | ParseMessage
  | BindMessage
  | DescribeMessage
  | ExecuteMessage
  | SyncMessage
  | FlushMessage
  | CloseMessage
  | CopyDataMessage
  | CopyDoneMessage
  | CopyFailMessage
  | FunctionCallMessage
  | TerminateMessage

/** The 'p' messages: which one arrives depends on the authentication exchange. */
export interface PasswordMessage { type: 'PasswordMessage'; password: string }
export interface SASLInitialResponseMessage { type: 'SASLInitialResponse'; mechanism: string; data: Buffer | null }
export interface SASLResponseMessage { type: 'SASLResponse'; data: Buffer }

type Fields<T> = Omit<T, 'type'>

export const SYNC = codeOnly(FrontendCode.Sync)
export const FLUSH = codeOnly(FrontendCode.Flush)
export const TERMINATE = codeOnly(FrontendCode.Terminate)
export const COPY_DONE = codeOnly(FrontendCode.CopyDone)

const builder = new MessageBuilder()

function codeOnly(code: number): Buffer {
  return Buffer.from([code, 0, 0, 0, 4])
}

export function decodeFrontendMessage(frame: Buffer): FrontendMessage {
  if (frame.length === 0) throw new ProtocolError('empty frontend message')
  const code = frame[0]!
  switch (code) {
    case FrontendCode.Query: return decodeQuery(frame)
    case FrontendCode.Parse: return decodeParse(frame)
    case FrontendCode.Bind: return decodeBind(frame)
    case FrontendCode.Describe: return decodeDescribe(frame)
    case FrontendCode.Execute: return decodeExecute(frame)
    case FrontendCode.Sync: return decodeSync(frame)
    case FrontendCode.Flush: return decodeFlush(frame)
    case FrontendCode.Close: return decodeClose(frame)
    case FrontendCode.CopyData: return decodeCopyData(frame)
    case FrontendCode.CopyDone: return decodeCopyDone(frame)
    case FrontendCode.CopyFail: return decodeCopyFail(frame)
    case FrontendCode.FunctionCall: return decodeFunctionCall(frame)
    case FrontendCode.Terminate: return decodeTerminate(frame)
    case FrontendCode.Password:
      throw new ProtocolError("unexpected authentication response message (type 'p') outside authentication")
    default:
      throw new ProtocolError(`invalid frontend message type ${code} (${JSON.stringify(String.fromCharCode(code))})`)
  }
}

export function decodeQuery(frame: Buffer): QueryMessage {
  const reader = openFrame(frame, FrontendCode.Query, 'Query')
  const sql = reader.cstring()
  reader.end()
  return { type: 'Query', sql }
}

export function decodeParse(frame: Buffer): ParseMessage {
  const reader = openFrame(frame, FrontendCode.Parse, 'Parse')
  const name = reader.cstring()
  const sql = reader.cstring()
  const count = reader.uint16()
  const paramTypes = new Array<number>(count)
  for (let i = 0; i < count; i++) paramTypes[i] = reader.uint32()
  reader.end()
  return { type: 'Parse', name, sql, paramTypes }
}

export function decodeBind(frame: Buffer): BindMessage {
  const reader = openFrame(frame, FrontendCode.Bind, 'Bind')
  const portal = reader.cstring()
  const statement = reader.cstring()
  const paramFormats = readFormats(reader)
  const count = reader.uint16()
  if (paramFormats.length > 1 && paramFormats.length !== count) {
    throw reader.error(`${paramFormats.length} parameter formats but ${count} parameters`)
  }
  const params = readValues(reader, count)
  const resultFormats = readFormats(reader)
  reader.end()
  return { type: 'Bind', portal, statement, paramFormats, params, resultFormats }
}

export function decodeDescribe(frame: Buffer): DescribeMessage {
  const reader = openFrame(frame, FrontendCode.Describe, 'Describe')
  const target = readTarget(reader)
  const name = reader.cstring()
  reader.end()
  return { type: 'Describe', target, name }
}

export function decodeExecute(frame: Buffer): ExecuteMessage {
  const reader = openFrame(frame, FrontendCode.Execute, 'Execute')
  const portal = reader.cstring()
  const maxRows = reader.int32()
  reader.end()
  return { type: 'Execute', portal, maxRows }
}

export function decodeSync(frame: Buffer): SyncMessage {
  openFrame(frame, FrontendCode.Sync, 'Sync').end()
  return { type: 'Sync' }
}

export function decodeFlush(frame: Buffer): FlushMessage {
  openFrame(frame, FrontendCode.Flush, 'Flush').end()
  return { type: 'Flush' }
}

export function decodeClose(frame: Buffer): CloseMessage {
  const reader = openFrame(frame, FrontendCode.Close, 'Close')
  const target = readTarget(reader)
  const name = reader.cstring()
  reader.end()
  return { type: 'Close', target, name }
}

/** Same frame in both directions. */
export function decodeCopyData(frame: Buffer): CopyDataMessage {
  return { type: 'CopyData', data: openFrame(frame, FrontendCode.CopyData, 'CopyData').rest() }
}

/** Same frame in both directions. */
export function decodeCopyDone(frame: Buffer): CopyDoneMessage {
  openFrame(frame, FrontendCode.CopyDone, 'CopyDone').end()
  return { type: 'CopyDone' }
}

export function decodeCopyFail(frame: Buffer): CopyFailMessage {
  const reader = openFrame(frame, FrontendCode.CopyFail, 'CopyFail')
  const message = reader.cstring()
  reader.end()
  return { type: 'CopyFail', message }
}

export function decodeFunctionCall(frame: Buffer): FunctionCallMessage {
  const reader = openFrame(frame, FrontendCode.FunctionCall, 'FunctionCall')
  const functionOid = reader.uint32()
  const argFormats = readFormats(reader)
  const count = reader.uint16()
  if (argFormats.length > 1 && argFormats.length !== count) {
    throw reader.error(`${argFormats.length} argument formats but ${count} arguments`)
  }
  const args = readValues(reader, count)
  const resultFormat = reader.format()
  reader.end()
  return { type: 'FunctionCall', functionOid, argFormats, args, resultFormat }
}

export function decodeTerminate(frame: Buffer): TerminateMessage {
  openFrame(frame, FrontendCode.Terminate, 'Terminate').end()
  return { type: 'Terminate' }
}

/** A cleartext password or an md5 hash ("md5" + 32 hex digits). */
export function decodePasswordMessage(frame: Buffer): PasswordMessage {
  const reader = openFrame(frame, FrontendCode.Password, 'PasswordMessage')
  const password = reader.cstring()
  reader.end()
  return { type: 'PasswordMessage', password }
}

export function decodeSASLInitialResponse(frame: Buffer): SASLInitialResponseMessage {
  const reader = openFrame(frame, FrontendCode.Password, 'SASLInitialResponse')
  const mechanism = reader.cstring()
  const data = reader.nullableBytes()
  reader.end()
  return { type: 'SASLInitialResponse', mechanism, data }
}

export function decodeSASLResponse(frame: Buffer): SASLResponseMessage {
  return { type: 'SASLResponse', data: openFrame(frame, FrontendCode.Password, 'SASLResponse').rest() }
}

function readTarget(reader: FrameReader): DescribeTarget {
  const target = reader.int8()
  if (target === 0x53) return 'S'
  if (target === 0x50) return 'P'
  throw reader.error(`invalid target ${JSON.stringify(String.fromCharCode(target))} (expected 'S' or 'P')`)
}

function readFormats(reader: FrameReader): number[] {
  const count = reader.uint16()
  const formats = new Array<number>(count)
  for (let i = 0; i < count; i++) formats[i] = reader.format()
  return formats
}

function readValues(reader: FrameReader, count: number): (Buffer | null)[] {
  const values = new Array<Buffer | null>(count)
  for (let i = 0; i < count; i++) values[i] = reader.nullableBytes()
  return values
}

export function encodeQuery(sql: string): Buffer {
  return builder.cstring(sql).frame(FrontendCode.Query)
}

export function encodeParse(message: Fields<ParseMessage>): Buffer {
  builder.cstring(message.name).cstring(message.sql).int16(message.paramTypes.length)
  for (const oid of message.paramTypes) builder.int32(oid)
  return builder.frame(FrontendCode.Parse)
}

export function encodeBind(message: Fields<BindMessage>): Buffer {
  builder.cstring(message.portal).cstring(message.statement)
  writeFormats(message.paramFormats)
  writeValues(message.params)
  writeFormats(message.resultFormats)
  return builder.frame(FrontendCode.Bind)
}

export function encodeDescribe(message: Fields<DescribeMessage>): Buffer {
  return builder.int8(message.target.charCodeAt(0)).cstring(message.name).frame(FrontendCode.Describe)
}

export function encodeExecute(message: Fields<ExecuteMessage>): Buffer {
  return builder.cstring(message.portal).int32(message.maxRows).frame(FrontendCode.Execute)
}

export function encodeSync(): Buffer {
  return SYNC
}

export function encodeFlush(): Buffer {
  return FLUSH
}

export function encodeClose(message: Fields<CloseMessage>): Buffer {
  return builder.int8(message.target.charCodeAt(0)).cstring(message.name).frame(FrontendCode.Close)
}

export function encodeCopyData(data: Uint8Array): Buffer {
  return builder.bytes(data).frame(FrontendCode.CopyData)
}

export function encodeCopyDone(): Buffer {
  return COPY_DONE
}

export function encodeCopyFail(message: string): Buffer {
  return builder.cstring(message).frame(FrontendCode.CopyFail)
}

export function encodeFunctionCall(message: Fields<FunctionCallMessage>): Buffer {
  builder.int32(message.functionOid)
  writeFormats(message.argFormats)
  writeValues(message.args)
  return builder.int16(message.resultFormat).frame(FrontendCode.FunctionCall)
}

export function encodeTerminate(): Buffer {
  return TERMINATE
}

export function encodePasswordMessage(password: string): Buffer {
  return builder.cstring(password).frame(FrontendCode.Password)
}

export function encodeSASLInitialResponse(mechanism: string, data: Uint8Array | null): Buffer {
  builder.cstring(mechanism)
  if (data === null) builder.int32(-1)
  else builder.int32(data.length).bytes(data)
  return builder.frame(FrontendCode.Password)
}

export function encodeSASLResponse(data: Uint8Array): Buffer {
  return builder.bytes(data).frame(FrontendCode.Password)
}

function writeFormats(formats: readonly number[]): void {
  builder.int16(formats.length)
  for (const format of formats) builder.int16(format)
}

function writeValues(values: readonly (Uint8Array | null)[]): void {
  builder.int16(values.length)
  for (const value of values) {
    if (value === null) builder.int32(-1)
    else builder.int32(value.length).bytes(value)
  }
}

/** Encode any decoded frontend message. */
export function encodeFrontendMessage(message: FrontendMessage): Buffer {
  switch (message.type) {
    case 'Query': return encodeQuery(message.sql)
    case 'Parse': return encodeParse(message)
    case 'Bind': return encodeBind(message)
    case 'Describe': return encodeDescribe(message)
    case 'Execute': return encodeExecute(message)
    case 'Sync': return SYNC
    case 'Flush': return FLUSH
    case 'Close': return encodeClose(message)
    case 'CopyData': return encodeCopyData(message.data)
    case 'CopyDone': return COPY_DONE
    case 'CopyFail': return encodeCopyFail(message.message)
    case 'FunctionCall': return encodeFunctionCall(message)
    case 'Terminate': return TERMINATE
  }
}
