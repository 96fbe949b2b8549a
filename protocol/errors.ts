/**
 * ErrorResponse / NoticeResponse fields, SQLSTATEs pgveil emits, and the wire-level
 * error type that becomes an ErrorResponse.
 */
import { BackendCode } from './message-codes.js'

/** SQLSTATE codes pgveil itself emits. */
export const SqlState = {
  ProtocolViolation: '08P01',
  ConnectionFailure: '08006',
  ConnectionException: '08000',
  TooManyConnections: '53300',
  AdminShutdown: '57P01',
  InvalidAuthorization: '28000',
  FeatureNotSupported: '0A000',
  InternalError: 'XX000',
} as const
export type SqlState = (typeof SqlState)[keyof typeof SqlState]

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG'

export interface ErrorFields {
  severity: Severity
  code: string
  message: string
  detail?: string
  hint?: string
}

/** A failure that must reach the client as an ErrorResponse with a SQLSTATE. */
export class WireError extends Error {
  readonly sqlState: string
  readonly severity: Severity
  readonly detail: string | undefined
  readonly hint: string | undefined
  constructor(sqlState: string, message: string, opts: { severity?: Severity; detail?: string; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'WireError'
    this.sqlState = sqlState
    this.severity = opts.severity ?? 'ERROR'
    this.detail = opts.detail
    this.hint = opts.hint
  }

  toFields(): ErrorFields {
    const fields: ErrorFields = { severity: this.severity, code: this.sqlState, message: this.message }
    if (this.detail !== undefined) fields.detail = this.detail
    if (this.hint !== undefined) fields.hint = this.hint
    return fields
  }
}

/** The client broke the protocol: always FATAL, the connection is closed after the error is sent. */
export class ProtocolError extends WireError {
  constructor(message: string) {
    super(SqlState.ProtocolViolation, message, { severity: 'FATAL' })
    this.name = 'ProtocolError'
  }
}

function encodeNotice(type: number, fields: ErrorFields): Buffer {
  const parts: [number, string][] = [
    [0x53, fields.severity], // S
    [0x56, fields.severity], // V: non-localized severity
    [0x43, fields.code], // C
    [0x4d, fields.message], // M
  ]
  if (fields.detail !== undefined) parts.push([0x44, fields.detail]) // D
  if (fields.hint !== undefined) parts.push([0x48, fields.hint]) // H
  let length = 4 + 1
  for (const [, value] of parts) length += 1 + Buffer.byteLength(value) + 1
  const out = Buffer.allocUnsafe(1 + length)
  out[0] = type
  out.writeUInt32BE(length, 1)
  let offset = 5
  for (const [field, value] of parts) {
    out[offset++] = field
    offset += out.write(value, offset)
    out[offset++] = 0
  }
  out[offset] = 0
  return out
}

export function encodeErrorResponse(fields: ErrorFields): Buffer {
  return encodeNotice(BackendCode.ErrorResponse, fields)
}

export function encodeNoticeResponse(fields: ErrorFields): Buffer {
  return encodeNotice(BackendCode.NoticeResponse, fields)
}

/** Field type byte → value of an ErrorResponse or NoticeResponse frame (whole frame, header included). */
export function decodeNoticeFields(frame: Buffer): Map<string, string> {
  const fields = new Map<string, string>()
  let offset = 5
  while (offset < frame.length && frame[offset] !== 0) {
    const type = String.fromCharCode(frame[offset]!)
    const end = frame.indexOf(0, offset + 1)
    if (end < 0) break
    fields.set(type, frame.toString('utf8', offset + 1, end))
    offset = end + 1
  }
  return fields
}
