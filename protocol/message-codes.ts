/** Message type bytes of the PostgreSQL v3 protocol, frontend side. */
export const FrontendCode = {
  Bind: 0x42, // B
  Close: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  Describe: 0x44, // D
  Execute: 0x45, // E
  Flush: 0x48, // H
  FunctionCall: 0x46, // F
  Parse: 0x50, // P
  /** PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share this byte. */
  Password: 0x70, // p
  Query: 0x51, // Q
  Sync: 0x53, // S
  Terminate: 0x58, // X
} as const
export type FrontendCode = (typeof FrontendCode)[keyof typeof FrontendCode]

/** Message type bytes of the PostgreSQL v3 protocol, backend side. */
export const BackendCode = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  CommandComplete: 0x43, // C
  CopyBothResponse: 0x57, // W
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  DataRow: 0x44, // D
  EmptyQueryResponse: 0x49, // I
  ErrorResponse: 0x45, // E
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
  NoData: 0x6e, // n
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParameterDescription: 0x74, // t
  ParameterStatus: 0x53, // S
  ParseComplete: 0x31, // 1
  PortalSuspended: 0x73, // s
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const
export type BackendCode = (typeof BackendCode)[keyof typeof BackendCode]

/** Codes in the first int32 after the length of an untyped startup-phase packet. */
export const StartupCode = {
  CancelRequest: 80877102,
  SSLRequest: 80877103,
  GSSENCRequest: 80877104,
  /** Protocol 3.0; 3.2 (PostgreSQL 18) is 196610. Major version is the high 16 bits. */
  ProtocolVersion3: 196608,
} as const
export type StartupCode = (typeof StartupCode)[keyof typeof StartupCode]

/** Authentication request subtypes (int32 after the length of an 'R' message). */
export const AuthCode = {
  Ok: 0,
  KerberosV5: 2,
  CleartextPassword: 3,
  MD5Password: 5,
  GSS: 7,
  GSSContinue: 8,
  SSPI: 9,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const
export type AuthCode = (typeof AuthCode)[keyof typeof AuthCode]

/** Transaction status byte of ReadyForQuery. */
export const TransactionStatus = {
  Idle: 0x49, // I
  InTransaction: 0x54, // T
  Failed: 0x45, // E
} as const
export type TransactionStatus = (typeof TransactionStatus)[keyof typeof TransactionStatus]

const frontendCodes = new Set<number>(Object.values(FrontendCode))
export function isFrontendCode(code: number): code is FrontendCode {
  return frontendCodes.has(code)
}
