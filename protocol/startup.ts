/** Untyped startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest. */
import { ProtocolError } from './errors.js'
import { StartupCode } from './message-codes.js'
import { FrameReader } from './reader.js'
import { MessageBuilder } from './writer.js'

export type StartupPacket =
  | { kind: 'startup'; protocolVersion: number; params: Map<string, string> }
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }

/** Protocol 3.0 cancel keys are 4 bytes; 3.2 (PostgreSQL 18) allows up to 256. */
export const MIN_CANCEL_KEY_LENGTH = 4
export const MAX_CANCEL_KEY_LENGTH = 256

const builder = new MessageBuilder(1024)

/** Decode a whole startup-phase packet (it starts with its int32 length). */
export function decodeStartupPacket(frame: Buffer): StartupPacket {
  if (frame.length < 8) throw new ProtocolError(`invalid startup packet length ${frame.length}`)
  const declared = frame.readUInt32BE(0)
  if (declared !== frame.length) {
    throw new ProtocolError(`invalid startup packet: length field says ${declared} bytes, packet has ${frame.length}`)
  }
  const code = frame.readUInt32BE(4)
  switch (code) {
    case StartupCode.SSLRequest:
      expectBare(frame, 'SSLRequest')
      return { kind: 'ssl' }
    case StartupCode.GSSENCRequest:
      expectBare(frame, 'GSSENCRequest')
      return { kind: 'gssenc' }
    case StartupCode.CancelRequest:
      return decodeCancelRequest(frame)
  }
  const major = code >>> 16
  const minor = code & 0xffff
  if (major === 1234) throw new ProtocolError(`unknown startup request code 1234.${minor}`)
  if (major !== 3) throw new ProtocolError(`unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.2`)
  return { kind: 'startup', protocolVersion: code, params: decodeStartupParams(frame) }
}

function expectBare(frame: Buffer, name: string): void {
  if (frame.length !== 8) throw new ProtocolError(`malformed ${name}: expected 8 bytes, got ${frame.length}`)
}

function decodeCancelRequest(frame: Buffer): StartupPacket {
  const reader = new FrameReader(frame, 8, 'CancelRequest')
  const processId = reader.int32()
  const keyLength = reader.remaining()
  if (keyLength < MIN_CANCEL_KEY_LENGTH || keyLength > MAX_CANCEL_KEY_LENGTH) {
    throw reader.error(`cancel key of ${keyLength} bytes (allowed ${MIN_CANCEL_KEY_LENGTH} to ${MAX_CANCEL_KEY_LENGTH})`)
  }
  return { kind: 'cancel', processId, secretKey: reader.rest() }
}

function decodeStartupParams(frame: Buffer): Map<string, string> {
  const reader = new FrameReader(frame, 8, 'startup')
  const params = new Map<string, string>()
  for (;;) {
    if (reader.remaining() === 0) throw reader.error('expected a NUL terminator as the last byte')
    const name = reader.cstring()
    if (name === '') break
    const value = reader.cstring()
    if (params.has(name)) throw reader.error(`duplicate parameter "${name}"`)
    params.set(name, value)
  }
  reader.end()
  if (!params.has('user')) throw new ProtocolError('no PostgreSQL user name specified in startup packet')
  return params
}

export function encodeStartupMessage(protocolVersion: number, params: Map<string, string> | Record<string, string>): Buffer {
  builder.int32(protocolVersion)
  const entries = params instanceof Map ? params.entries() : Object.entries(params)
  for (const [name, value] of entries) {
    if (name === '') {
      builder.discard()
      throw new RangeError('a startup parameter name cannot be empty')
    }
    builder.cstring(name).cstring(value)
  }
  return builder.int8(0).frame()
}

export function encodeSSLRequest(): Buffer {
  return builder.int32(StartupCode.SSLRequest).frame()
}

export function encodeGSSENCRequest(): Buffer {
  return builder.int32(StartupCode.GSSENCRequest).frame()
}

export function encodeCancelRequest(processId: number, secretKey: Uint8Array): Buffer {
  if (secretKey.length < MIN_CANCEL_KEY_LENGTH || secretKey.length > MAX_CANCEL_KEY_LENGTH) {
    throw new RangeError(`cancel key must be ${MIN_CANCEL_KEY_LENGTH} to ${MAX_CANCEL_KEY_LENGTH} bytes, got ${secretKey.length}`)
  }
  return builder.int32(StartupCode.CancelRequest).int32(processId).bytes(secretKey).frame()
}
