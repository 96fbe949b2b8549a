/**
 * ErrorResponse / NoticeResponse fields, SQLSTATEs pgveil emits, and the wire-level
 * error type that becomes an ErrorResponse.
 */

/** SQLSTATE codes pgveil itself emits. */
export const SqlState = {
  ProtocolViolation: '08P01',
  ConnectionFailure: '08006',
  TooManyConnections: '53300',
  AdminShutdown: '57P01',
  InvalidAuthorization: '28000',
  FeatureNotSupported: '0A000',
  InternalError: 'XX000',
  // Data errors of the type codecs and decryption (PostgreSQL's codes for the same failures).
  NumericValueOutOfRange: '22003',
  InvalidDatetimeFormat: '22007',
  DatetimeFieldOverflow: '22008',
  InvalidTimeZoneDisplacementValue: '22009',
  CharacterNotInRepertoire: '22021',
  InvalidTextRepresentation: '22P02',
  InvalidBinaryRepresentation: '22P03',
  UntranslatableCharacter: '22P05',
  StatementTooComplex: '54001',
  DataCorrupted: 'XX001',
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
