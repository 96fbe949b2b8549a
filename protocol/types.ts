/**
 * Text ⇄ binary codecs of the plaintext types a policy can declare (DESIGN decision 5).
 *
 * A protected value is stored, encrypted, as its CANONICAL TEXT: the text PostgreSQL
 * itself prints for the value in a session with `TimeZone = 'UTC'` and
 * `DateStyle = 'ISO'`. Every codec
 *   - turns what a client sends (a Bind parameter in text or binary format, or the
 *     text of an SQL literal) into the canonical text, validating it as PostgreSQL
 *     would and failing with PostgreSQL's SQLSTATE and message (`canonicalFromText`,
 *     `canonicalFromBinary`);
 *   - turns decrypted canonical text into what the client asked for: PostgreSQL's text
 *     output for the session (`toText`) or its binary send format (`toBinary`).
 *
 * Canonical forms and accepted input, per type (the README repeats this table):
 *
 * | type        | canonical text | text input accepted |
 * |-------------|----------------|---------------------|
 * | text        | the string itself | any Unicode but NUL (22021, as PostgreSQL) |
 * | smallint, integer, bigint | decimal, no leading zeros or '+'; '-0' is '0' | PostgreSQL 16+ syntax: surrounding whitespace, sign, `_` between digits, 0x/0o/0b prefixes; range-checked (22003) |
 * | numeric     | PostgreSQL's output: the scale as typed ('1.50'), exponent expanded ('1e3' → '1000', '1.50e1' → '15.0'), 'NaN', 'Infinity', '-Infinity' | PostgreSQL 16+ syntax: whitespace, sign, exponent, `_`, 0x/0o/0b, 'inf', NaN/Infinity in any case; up to 131072 integer and 16383 fractional digits (else 22003) |
 * | date        | 'YYYY-MM-DD' (4+ digit year), ' BC' suffix, 'infinity', '-infinity' | ISO year-month-day (year of 3+ digits, 1-2 digit month and day), optional AD/BC; 'infinity', '+infinity', '-infinity', 'epoch' |
 * | timestamptz | in UTC: 'YYYY-MM-DD HH:MM:SS[.ffffff]+00[ BC]', fraction without trailing zeros; 'infinity', '-infinity' | ISO 8601: date, then 'T' or space, HH:MM[:SS[.fraction]] (rounded to microseconds half-to-even, as PostgreSQL's rint(); 24:00:00 and second 60 roll over), offset (Z, UTC, GMT, ±H, ±HH, ±HHMM, ±HH:MM[:SS], at most ±15:59:59) or IANA zone name, optional AD/BC; a date alone is midnight; without an offset the session's TimeZone applies (a skipped local time takes the offset before the transition, a repeated one the later instant, as PostgreSQL); 'infinity', '+infinity', '-infinity', 'epoch' |
 * | boolean     | 't' or 'f' | true/false/yes/no/on/off and their unique prefixes, 1/0, any case, surrounding whitespace |
 * | uuid        | lower-case 8-4-4-4-12 | any case, optional braces, a hyphen after any group of 4 hex digits or none |
 * | jsonb       | PostgreSQL's jsonb output: keys sorted (shorter UTF-8 first, then bytewise), the last duplicate wins, `": "` and `", "`, numbers in numeric's canonical form, strings with escapes resolved and only `"`, `\` and control characters escaped | any JSON PostgreSQL's lexer accepts; \u0000 is refused (22P05), nesting beyond 2000 levels too (54001) |
 *
 * Binary formats are PostgreSQL's send/receive formats: int16/32/64 big-endian; numeric
 * as ndigits, weight, sign (0x0000, 0x4000, NaN 0xC000, ±Infinity 0xD000/0xF000),
 * dscale and base-10000 digits; date as int32 days since 2000-01-01 (INT32_MIN/MAX for
 * ∓infinity); timestamptz as int64 microseconds since 2000-01-01 00:00 UTC (INT64_MIN/MAX
 * for ∓infinity); boolean one byte (any non-zero byte reads as true); uuid 16 bytes;
 * jsonb a version byte 1 and the text; text its UTF-8 bytes. Malformed binary input
 * fails with 22P03, values out of the type's range as PostgreSQL does (22008 for dates).
 *
 * Refused although PostgreSQL would accept it, with 22007 and a hint naming the accepted
 * forms (PostgreSQL reads them through the session's DateStyle or clock, which the proxy
 * cannot follow reliably): dates and timestamps in other orders ('01/02/2024',
 * 'Jan 2 2024', '20240102', '2024-001'), 1-2 digit years, 'now', 'today', 'tomorrow',
 * 'yesterday', time zone abbreviations ('CET', 'PST'), AM/PM, times without colons
 * ('1230'), 'HH:MM.ss' (which PostgreSQL reads as minutes and seconds), and a date
 * followed by a time for the date type.
 *
 * PostgreSQL 15 refuses `_` separators and 0x/0o/0b prefixes in numbers and '+infinity'
 * for dates and timestamps; pgveil accepts them as PostgreSQL 16+ does, whatever the
 * upstream version: the value they denote is unambiguous.
 *
 * `toText` and `toBinary` trust nothing: a decrypted value that is not in the type's
 * canonical form (say the policy type changed after values were stored) fails with
 * XX001. jsonb's canonical form is not re-parsed on output, for speed.
 *
 * Output follows the session's DateStyle (ISO, SQL, Postgres, German; the DMY field
 * order where it matters) as PostgreSQL's EncodeDateOnly / EncodeDateTime do. The SQL,
 * Postgres and German styles print a timestamptz with its zone's abbreviation, which
 * PostgreSQL takes from its tzdata: pgveil knows it only for zones with one fixed
 * abbreviation (the UTC and GMT names, Etc/GMT±N, POSIX fixed zones such as '<+02>-02'
 * or 'EST5') and refuses the rest with 0A000 (see `zoneAbbreviation`). Session time zones are IANA
 * names (offsets come from Node.js's ICU data, which may differ from PostgreSQL's tzdata
 * for zones whose history changed between releases), fixed offsets ('<+02>-02', 'UTC0',
 * '+02' hours as in `SET TIME ZONE`) and `posix/` names; POSIX strings with DST rules
 * and `right/` (leap second) zones are refused with 0A000 (`isSupportedTimeZone`).
 * Client text is assumed to be UTF-8 (client_encoding UTF8).
 */
import { SqlState, WireError } from './errors.js'

export const POLICY_TYPES = ['text', 'smallint', 'integer', 'bigint', 'numeric', 'date', 'timestamptz', 'boolean', 'uuid', 'jsonb'] as const
export type PolicyType = (typeof POLICY_TYPES)[number]

/** pg_type OIDs of the supported types, and of bytea (the stored column type). */
export const TypeOid = {
  bool: 16,
  bytea: 17,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  date: 1082,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const

/** pg_type OIDs of the array types of `TypeOid`'s entries. */
export const ArrayTypeOid = {
  bool: 1000,
  bytea: 1001,
  int2: 1005,
  int4: 1007,
  text: 1009,
  int8: 1016,
  date: 1182,
  timestamptz: 1185,
  numeric: 1231,
  uuid: 2951,
  jsonb: 3807,
} as const

/** What a session's ParameterStatus messages say about how values are printed. */
export interface SessionFormat {
  /** TimeZone as PostgreSQL reports it: 'UTC', 'Europe/Paris', '<+02>-02', 'posix/Europe/Paris'. */
  readonly timeZone: string
  /** DateStyle as PostgreSQL reports it: 'ISO, MDY', 'SQL, DMY', 'Postgres, MDY', 'German, DMY'. */
  readonly dateStyle: string
  /** Not used: no supported type prints intervals. */
  readonly intervalStyle?: string
  /**
   * Set between a statement that changed TimeZone or DateStyle (its name: 'SET TimeZone')
   * and the ParameterStatus that reports the new value (at the batch's Sync): dates and
   * timestamps cannot be printed meanwhile.
   */
  readonly staleAfter?: string | undefined
  /** Always on since PostgreSQL 10; floating-point datetimes are not supported. */
  readonly integerDatetimes: true
}

export interface TypeCodec {
  readonly type: PolicyType
  /** The name PostgreSQL uses for the type in messages (format_type). */
  readonly sqlName: string
  readonly oid: number
  readonly arrayOid: number
  /** pg_type.typlen, for RowDescription: the fixed size in bytes, or -1. */
  readonly typlen: number
  /**
   * Client text (Bind format 0, SQL literal) → canonical text. `session` is needed by
   * timestamptz input without an offset; without it such input is refused.
   */
  canonicalFromText(text: string, session?: SessionFormat): string
  /** Client binary (Bind format 1) → canonical text. */
  canonicalFromBinary(bytes: Buffer): string
  /** Canonical text → PostgreSQL's text output in this session. */
  toText(canonical: string, session: SessionFormat): string
  /** Canonical text → PostgreSQL's binary send format. */
  toBinary(canonical: string): Buffer
}

// ---------------------------------------------------------------------------
// Shared helpers

const PLUS = 0x2b
const MINUS = 0x2d
const DOT = 0x2e
const ZERO = 0x30
const UNDERSCORE = 0x5f

/** C isspace() in the C locale, which PostgreSQL's input functions use. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d)
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39
}

/** Value of `c` as a digit in `base` (2, 8, 10 or 16), or -1. */
function digitValue(c: number, base: number): number {
  let d: number
  if (c >= 0x30 && c <= 0x39) d = c - 0x30
  else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10
  else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10
  else return -1
  return d < base ? d : -1
}

function skipSpaces(s: string, from: number): number {
  let i = from
  while (i < s.length && isSpace(s.charCodeAt(i))) i++
  return i
}

function trimSpaces(s: string): string {
  let end = s.length
  while (end > 0 && isSpace(s.charCodeAt(end - 1))) end--
  return s.slice(skipSpaces(s, 0), end)
}

/** Case-insensitive (ASCII) test that `s` has `word` (lower case) at `at`. */
function hasWordAt(s: string, at: number, word: string): boolean {
  if (s.length - at < word.length) return false
  for (let k = 0; k < word.length; k++) {
    let c = s.charCodeAt(at + k)
    if (c >= 0x41 && c <= 0x5a) c += 0x20
    if (c !== word.charCodeAt(k)) return false
  }
  return true
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase())
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}

function invalidSyntax(sqlName: string, input: string): WireError {
  return new WireError(SqlState.InvalidTextRepresentation, `invalid input syntax for type ${sqlName}: "${input}"`)
}

function badBinary(sqlName: string, detail: string): WireError {
  return new WireError(SqlState.InvalidBinaryRepresentation, `incorrect binary data format for type ${sqlName}: ${detail}`)
}

function expectLength(bytes: Buffer, length: number, sqlName: string): void {
  if (bytes.length !== length) throw badBinary(sqlName, `expected ${length} bytes, got ${bytes.length}`)
}

/**
 * A decrypted value that is not in the canonical form of the column's type: a policy
 * type changed after values were stored, or a bug. The value itself stays out of the message.
 */
function notCanonical(sqlName: string): WireError {
  return new WireError(SqlState.DataCorrupted, `decrypted value is not a canonical ${sqlName}`, {
    hint: 'check that the policy declares the type the column was encrypted with',
  })
}

function invalidByteSequence(bytes: ArrayLike<number>): WireError {
  const hex = Array.from(bytes, (b) => `0x${b.toString(16).padStart(2, '0')}`).join(' ')
  return new WireError(SqlState.CharacterNotInRepertoire, `invalid byte sequence for encoding "UTF8": ${hex}`)
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * PostgreSQL verifies client text as UTF-8 before any input function sees it, so NUL
 * and (for a string decoded elsewhere) lone surrogates fail with 22021 whatever the type.
 */
function checkClientText(input: string): void {
  if (input.includes('\0')) throw invalidByteSequence([0])
  const lone = LONE_SURROGATE.exec(input)
  if (lone !== null) {
    // The bytes a client would have sent for it (CESU-8), which PostgreSQL names.
    const u = lone[0].charCodeAt(0)
    throw invalidByteSequence([0xe0 | (u >> 12), 0x80 | ((u >> 6) & 0x3f), 0x80 | (u & 0x3f)])
  }
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Length of the UTF-8 sequence a lead byte announces (pg_utf_mblen). */
function utf8SequenceLength(lead: number): number {
  if (lead < 0x80) return 1
  if ((lead & 0xe0) === 0xc0) return 2
  if ((lead & 0xf0) === 0xe0) return 3
  if ((lead & 0xf8) === 0xf0) return 4
  return 1
}

/** pg_utf8_islegal. */
function isLegalUtf8(b: Uint8Array, at: number, length: number): boolean {
  const lead = b[at]!
  if ((lead >= 0x80 && lead < 0xc2) || lead > 0xf4) return false
  for (let k = 1; k < length; k++) {
    const c = b[at + k]!
    let low = 0x80
    let high = 0xbf
    if (k === 1) {
      if (lead === 0xe0) low = 0xa0
      else if (lead === 0xed) high = 0x9f
      else if (lead === 0xf0) low = 0x90
      else if (lead === 0xf4) high = 0x8f
    }
    if (c < low || c > high) return false
  }
  return true
}

/** Offset of the first NUL or invalid UTF-8 sequence, or -1. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0
  while (i < b.length) {
    const c = b[i]!
    if (c < 0x80) {
      if (c === 0) return i
      i++
      continue
    }
    const length = utf8SequenceLength(c)
    if (length > b.length - i || !isLegalUtf8(b, i, length)) return i
    i += length
  }
  return -1
}

/** Client bytes → string, failing like PostgreSQL's encoding check (22021, naming the bad bytes). */
function decodeClientUtf8(bytes: Buffer): string {
  let text: string | undefined
  if (bytes.indexOf(0) < 0) {
    try {
      text = utf8Decoder.decode(bytes)
    } catch {
      text = undefined
    }
  }
  if (text !== undefined) return text
  const at = firstInvalidUtf8(bytes)
  const length = Math.min(utf8SequenceLength(bytes[at]!), bytes.length - at, 8)
  throw invalidByteSequence(bytes.subarray(at, at + length))
}

// ---------------------------------------------------------------------------
// text

const textCodec: TypeCodec = {
  type: 'text',
  sqlName: 'text',
  oid: TypeOid.text,
  arrayOid: ArrayTypeOid.text,
  typlen: -1,
  canonicalFromText(text) {
    checkClientText(text)
    return text
  },
  canonicalFromBinary(bytes) {
    return decodeClientUtf8(bytes)
  },
  toText(canonical) {
    return canonical
  },
  toBinary(canonical) {
    return Buffer.from(canonical, 'utf8')
  },
}

// ---------------------------------------------------------------------------
// smallint, integer, bigint

interface IntegerKind {
  readonly type: 'smallint' | 'integer' | 'bigint'
  readonly bytes: 2 | 4 | 8
  readonly max: bigint
  /** Already canonical and certainly in range: returned as is. */
  readonly fast: RegExp
}

const CANONICAL_INTEGER = /^-?(?:0|[1-9][0-9]*)$/

/** pg_strtoint16/32/64_safe of PostgreSQL 16+, including the order of its checks. */
function integerFromText(kind: IntegerKind, input: string): string {
  if (kind.fast.test(input)) return input
  checkClientText(input)
  const n = input.length
  let i = skipSpaces(input, 0)
  let negative = false
  if (input.charCodeAt(i) === MINUS) {
    negative = true
    i++
  } else if (input.charCodeAt(i) === PLUS) {
    i++
  }
  let base = 10
  if (input.charCodeAt(i) === ZERO) {
    const prefix = input.charCodeAt(i + 1) | 0x20
    base = prefix === 0x78 ? 16 : prefix === 0x6f ? 8 : prefix === 0x62 ? 2 : 10
    if (base !== 10) i += 2
  }
  const bigBase = BigInt(base)
  // PostgreSQL stops as soon as one more digit could overflow the unsigned accumulator.
  const limit = (kind.max + 1n) / bigBase
  const first = i
  let value = 0n
  for (;;) {
    const c = input.charCodeAt(i)
    const d = digitValue(c, base)
    if (d >= 0) {
      if (value > limit) throw integerOutOfRange(kind, input)
      value = value * bigBase + BigInt(d)
      i++
    } else if (c === UNDERSCORE) {
      // Only decimal digits may not start with an underscore ('0x_1F' is valid).
      if (base === 10 && i === first) throw invalidSyntax(kind.type, input)
      i++
      if (digitValue(input.charCodeAt(i), base) < 0) throw invalidSyntax(kind.type, input)
    } else {
      break
    }
  }
  if (i === first) throw invalidSyntax(kind.type, input)
  if (skipSpaces(input, i) !== n) throw invalidSyntax(kind.type, input)
  if (value > (negative ? kind.max + 1n : kind.max)) throw integerOutOfRange(kind, input)
  return negative && value !== 0n ? `-${value}` : value.toString()
}

function integerOutOfRange(kind: IntegerKind, input: string): WireError {
  return new WireError(SqlState.NumericValueOutOfRange, `value "${input}" is out of range for type ${kind.type}`)
}

function checkCanonicalInteger(kind: IntegerKind, canonical: string): void {
  if (!CANONICAL_INTEGER.test(canonical) || canonical.length > 20) throw notCanonical(kind.type)
  const value = BigInt(canonical)
  if (value > kind.max || value < -kind.max - 1n) throw notCanonical(kind.type)
}

function integerCodec(kind: IntegerKind, oid: number, arrayOid: number): TypeCodec {
  return {
    type: kind.type,
    sqlName: kind.type,
    oid,
    arrayOid,
    typlen: kind.bytes,
    canonicalFromText(text) {
      return integerFromText(kind, text)
    },
    canonicalFromBinary(bytes) {
      expectLength(bytes, kind.bytes, kind.type)
      if (kind.bytes === 2) return String(bytes.readInt16BE(0))
      if (kind.bytes === 4) return String(bytes.readInt32BE(0))
      return bytes.readBigInt64BE(0).toString()
    },
    toText(canonical) {
      if (!kind.fast.test(canonical)) checkCanonicalInteger(kind, canonical)
      return canonical
    },
    toBinary(canonical) {
      if (!kind.fast.test(canonical)) checkCanonicalInteger(kind, canonical)
      const out = Buffer.allocUnsafe(kind.bytes)
      if (kind.bytes === 2) out.writeInt16BE(Number(canonical), 0)
      else if (kind.bytes === 4) out.writeInt32BE(Number(canonical), 0)
      else out.writeBigInt64BE(BigInt(canonical), 0)
      return out
    },
  }
}

const SMALLINT: IntegerKind = { type: 'smallint', bytes: 2, max: 0x7fffn, fast: /^(?:-?[1-9][0-9]{0,3}|0)$/ }
const INTEGER: IntegerKind = { type: 'integer', bytes: 4, max: 0x7fffffffn, fast: /^(?:-?[1-9][0-9]{0,8}|0)$/ }
const BIGINT: IntegerKind = { type: 'bigint', bytes: 8, max: 0x7fffffffffffffffn, fast: /^(?:-?[1-9][0-9]{0,17}|0)$/ }

// ---------------------------------------------------------------------------
// numeric

/** Largest display scale and number of integer digits PostgreSQL's numeric stores. */
const NUMERIC_MAX_DSCALE = 0x3fff
const NUMERIC_MAX_INTEGER_DIGITS = 131072
const NUMERIC_POS = 0x0000
const NUMERIC_NEG = 0x4000
const NUMERIC_NAN = 0xc000
const NUMERIC_PINF = 0xd000
const NUMERIC_NINF = 0xf000

const CANONICAL_NUMERIC = /^(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|NaN|-?Infinity)$/

function numericOverflow(): WireError {
  return new WireError(SqlState.NumericValueOutOfRange, 'value overflows numeric format')
}

/** numeric_in of PostgreSQL 16+. */
function numericFromText(input: string): string {
  checkClientText(input)
  const invalid = (): WireError => invalidSyntax('numeric', input)
  let i = skipSpaces(input, 0)
  const numberStart = i
  let negative = false
  if (input.charCodeAt(i) === PLUS) {
    i++
  } else if (input.charCodeAt(i) === MINUS) {
    negative = true
    i++
  }
  let result: string
  const c = input.charCodeAt(i)
  if (!isDigit(c) && c !== DOT) {
    // NaN takes no sign; infinities may be spelled 'inf'.
    if (hasWordAt(input, numberStart, 'nan')) {
      result = 'NaN'
      i = numberStart + 3
    } else if (hasWordAt(input, i, 'infinity')) {
      result = negative ? '-Infinity' : 'Infinity'
      i += 8
    } else if (hasWordAt(input, i, 'inf')) {
      result = negative ? '-Infinity' : 'Infinity'
      i += 3
    } else {
      throw invalid()
    }
  } else if (c === ZERO && [0x78, 0x6f, 0x62].includes(input.charCodeAt(i + 1) | 0x20)) {
    const prefix = input.charCodeAt(i + 1) | 0x20
    const base = prefix === 0x78 ? 16 : prefix === 0x6f ? 8 : 2
    i += 2
    const first = i
    let digits = ''
    for (;;) {
      const ch = input.charCodeAt(i)
      if (digitValue(ch, base) >= 0) {
        digits += input[i]
        i++
      } else if (ch === UNDERSCORE) {
        i++
        if (digitValue(input.charCodeAt(i), base) < 0) throw invalid()
      } else {
        break
      }
    }
    if (i === first) throw invalid()
    const magnitude = BigInt((base === 16 ? '0x' : base === 8 ? '0o' : '0b') + digits).toString()
    if (magnitude.length > NUMERIC_MAX_INTEGER_DIGITS) throw numericOverflow()
    result = negative && magnitude !== '0' ? `-${magnitude}` : magnitude
  } else {
    const parsed = parseDecimal(input, i, invalid)
    i = parsed.end
    result = formatDecimal(negative, parsed.digits, parsed.pointPosition, parsed.scale)
  }
  if (skipSpaces(input, i) !== input.length) throw invalid()
  return result
}

interface ParsedDecimal {
  /** All mantissa digits, leading and trailing zeros included. */
  digits: string
  /** Where the decimal point goes in `digits` after the exponent (may be < 0 or > length). */
  pointPosition: number
  /** Display scale: fractional digits minus the exponent, at least 0. */
  scale: number
  end: number
}

/** set_var_from_str of PostgreSQL 16+, from the first digit or '.' after the sign. */
function parseDecimal(input: string, start: number, invalid: () => WireError): ParsedDecimal {
  let i = start
  let havePoint = false
  if (input.charCodeAt(i) === DOT) {
    havePoint = true
    i++
  }
  if (!isDigit(input.charCodeAt(i))) throw invalid()
  let digits = ''
  let integerDigits = 0
  let fractionDigits = 0
  let runStart = i
  for (;;) {
    const c = input.charCodeAt(i)
    if (isDigit(c)) {
      if (havePoint) fractionDigits++
      else integerDigits++
      i++
    } else if (c === DOT) {
      if (havePoint) throw invalid()
      digits += input.slice(runStart, i)
      havePoint = true
      i++
      if (input.charCodeAt(i) === UNDERSCORE) throw invalid()
      runStart = i
    } else if (c === UNDERSCORE) {
      digits += input.slice(runStart, i)
      i++
      if (!isDigit(input.charCodeAt(i))) throw invalid()
      runStart = i
    } else {
      break
    }
  }
  digits += input.slice(runStart, i)
  let exponent = 0
  const e = input.charCodeAt(i)
  if (e === 0x65 || e === 0x45) {
    i++
    let negativeExponent = false
    if (input.charCodeAt(i) === PLUS) {
      i++
    } else if (input.charCodeAt(i) === MINUS) {
      negativeExponent = true
      i++
    }
    if (!isDigit(input.charCodeAt(i))) throw invalid()
    for (;;) {
      const c = input.charCodeAt(i)
      if (isDigit(c)) {
        exponent = exponent * 10 + (c - ZERO)
        if (exponent > 0x3fffffff) throw numericOverflow()
        i++
      } else if (c === UNDERSCORE) {
        i++
        if (!isDigit(input.charCodeAt(i))) throw invalid()
      } else {
        break
      }
    }
    if (negativeExponent) exponent = -exponent
  }
  return { digits, pointPosition: integerDigits + exponent, scale: Math.max(0, fractionDigits - exponent), end: i }
}

/** get_str_from_var: the digits with the point placed, `scale` fractional digits, no leading zeros. */
function formatDecimal(negative: boolean, digits: string, pointPosition: number, scale: number): string {
  if (scale > NUMERIC_MAX_DSCALE) throw numericOverflow()
  let firstNonZero = 0
  while (firstNonZero < digits.length && digits.charCodeAt(firstNonZero) === ZERO) firstNonZero++
  if (firstNonZero === digits.length) return scale > 0 ? `0.${'0'.repeat(scale)}` : '0'
  // Decimal weight of the first significant digit; numeric's int16 weight in base 10000 bounds it.
  if (pointPosition - 1 - firstNonZero >= NUMERIC_MAX_INTEGER_DIGITS) throw numericOverflow()
  let integer: string
  let fraction: string
  if (pointPosition <= 0) {
    integer = '0'
    fraction = '0'.repeat(-pointPosition) + digits
  } else if (pointPosition >= digits.length) {
    integer = digits + '0'.repeat(pointPosition - digits.length)
    fraction = ''
  } else {
    integer = digits.slice(0, pointPosition)
    fraction = digits.slice(pointPosition)
  }
  let lead = 0
  while (lead < integer.length - 1 && integer.charCodeAt(lead) === ZERO) lead++
  integer = integer.slice(lead)
  // The scale always covers every given fractional digit; pad when the exponent moved the point right.
  if (fraction.length < scale) fraction += '0'.repeat(scale - fraction.length)
  return `${negative ? '-' : ''}${integer}${scale > 0 ? `.${fraction}` : ''}`
}

/** numeric_recv: validates sign, scale and digits; digits beyond the scale are truncated. */
function numericFromBinary(bytes: Buffer): string {
  if (bytes.length < 8) throw badBinary('numeric', `expected at least 8 bytes, got ${bytes.length}`)
  const ndigits = bytes.readUInt16BE(0)
  const weight = bytes.readInt16BE(2)
  const sign = bytes.readUInt16BE(4)
  const dscale = bytes.readUInt16BE(6)
  if (bytes.length !== 8 + 2 * ndigits) throw badBinary('numeric', `${ndigits} digits need ${8 + 2 * ndigits} bytes, got ${bytes.length}`)
  if (sign !== NUMERIC_POS && sign !== NUMERIC_NEG && sign !== NUMERIC_NAN && sign !== NUMERIC_PINF && sign !== NUMERIC_NINF) {
    throw new WireError(SqlState.InvalidBinaryRepresentation, 'invalid sign in external "numeric" value')
  }
  if ((dscale & NUMERIC_MAX_DSCALE) !== dscale) throw new WireError(SqlState.InvalidBinaryRepresentation, 'invalid scale in external "numeric" value')
  const digits: number[] = []
  for (let k = 0; k < ndigits; k++) {
    const d = bytes.readInt16BE(8 + 2 * k)
    if (d < 0 || d >= 10000) throw new WireError(SqlState.InvalidBinaryRepresentation, 'invalid digit in external "numeric" value')
    digits.push(d)
  }
  if (sign === NUMERIC_NAN) return 'NaN'
  if (sign === NUMERIC_PINF) return 'Infinity'
  if (sign === NUMERIC_NINF) return '-Infinity'
  const group = (position: number): string => {
    const index = weight - position
    const d = index >= 0 && index < ndigits ? digits[index]! : 0
    return String(d).padStart(4, '0')
  }
  let integer = ''
  for (let position = weight; position >= 0; position--) integer += group(position)
  let fraction = ''
  for (let position = -1; fraction.length < dscale; position--) fraction += group(position)
  fraction = fraction.slice(0, dscale)
  let lead = 0
  while (lead < integer.length - 1 && integer.charCodeAt(lead) === ZERO) lead++
  integer = integer.length === 0 ? '0' : integer.slice(lead)
  const isZero = integer === '0' && !/[1-9]/.test(fraction)
  return `${sign === NUMERIC_NEG && !isZero ? '-' : ''}${integer}${dscale > 0 ? `.${fraction}` : ''}`
}

function numericHeader(ndigits: number, weight: number, sign: number, dscale: number): Buffer {
  const out = Buffer.alloc(8 + 2 * ndigits)
  out.writeUInt16BE(ndigits, 0)
  out.writeInt16BE(weight, 2)
  out.writeUInt16BE(sign, 4)
  out.writeUInt16BE(dscale, 6)
  return out
}

/** numeric_send: base-10000 digits without leading or trailing zero digits. */
function numericToBinary(canonical: string): Buffer {
  if (!CANONICAL_NUMERIC.test(canonical)) throw notCanonical('numeric')
  // Infinities carry the short-header bits PostgreSQL leaves in their dscale field.
  if (canonical === 'NaN') return numericHeader(0, 0, NUMERIC_NAN, 0)
  if (canonical === 'Infinity') return numericHeader(0, 0, NUMERIC_PINF, 0x20)
  if (canonical === '-Infinity') return numericHeader(0, 0, NUMERIC_NINF, 0x20)
  const negative = canonical.charCodeAt(0) === MINUS
  const body = negative ? canonical.slice(1) : canonical
  const point = body.indexOf('.')
  const integer = point < 0 ? body : body.slice(0, point)
  const fraction = point < 0 ? '' : body.slice(point + 1)
  const dscale = fraction.length
  if (dscale > NUMERIC_MAX_DSCALE || integer.length > NUMERIC_MAX_INTEGER_DIGITS) throw notCanonical('numeric')
  const integerPadded = '0'.repeat((4 - (integer.length % 4)) % 4) + integer
  const fractionPadded = fraction + '0'.repeat((4 - (fraction.length % 4)) % 4)
  const all = integerPadded + fractionPadded
  const groups: number[] = []
  for (let k = 0; k < all.length; k += 4) groups.push(Number(all.slice(k, k + 4)))
  let weight = integerPadded.length / 4 - 1
  let first = 0
  while (first < groups.length && groups[first] === 0) {
    first++
    weight--
  }
  let end = groups.length
  while (end > first && groups[end - 1] === 0) end--
  if (first === end) return numericHeader(0, 0, NUMERIC_POS, dscale)
  const out = numericHeader(end - first, weight, negative ? NUMERIC_NEG : NUMERIC_POS, dscale)
  for (let k = first; k < end; k++) out.writeInt16BE(groups[k]!, 8 + 2 * (k - first))
  return out
}

const numericCodec: TypeCodec = {
  type: 'numeric',
  sqlName: 'numeric',
  oid: TypeOid.numeric,
  arrayOid: ArrayTypeOid.numeric,
  typlen: -1,
  canonicalFromText: numericFromText,
  canonicalFromBinary: numericFromBinary,
  toText(canonical) {
    if (!CANONICAL_NUMERIC.test(canonical)) throw notCanonical('numeric')
    return canonical
  },
  toBinary: numericToBinary,
}

// ---------------------------------------------------------------------------
// Calendar (PostgreSQL's proleptic Gregorian calendar; year 0 is 1 BC)

const POSTGRES_EPOCH_JDATE = 2451545
/** Unix time of 2000-01-01 00:00:00 UTC. */
const POSTGRES_EPOCH_UNIX = 946684800
const SECS_PER_DAY = 86400
const USECS_PER_SEC = 1000000
/** Days since 2000-01-01 of the first date PostgreSQL stores (4714-11-24 BC) and one past the last. */
const MIN_DATE_DAYS = -POSTGRES_EPOCH_JDATE
const END_DATE_DAYS = 2147483494 - POSTGRES_EPOCH_JDATE
const DATE_NOBEGIN = -0x80000000
const DATE_NOEND = 0x7fffffff
/** MIN_TIMESTAMP and END_TIMESTAMP in seconds since 2000-01-01 UTC (both are whole seconds). */
const MIN_TIMESTAMP_SEC = -211813488000
const END_TIMESTAMP_SEC = 9223371331200
const DT_NOBEGIN = -0x8000000000000000n
const DT_NOEND = 0x7fffffffffffffffn
const INT32_MAX = 0x7fffffff

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
}

function daysInMonth(year: number, month: number): number {
  return month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1]!
}

/** date2j: Julian day number of a date (astronomical year). */
function date2j(year: number, month: number, day: number): number {
  let y = year
  let m = month
  if (m > 2) {
    m += 1
    y += 4800
  } else {
    m += 13
    y += 4799
  }
  const century = Math.floor(y / 100)
  return y * 365 - 32167 + Math.floor(y / 4) - century + Math.floor(century / 4) + Math.floor((7834 * m) / 256) + day
}

/** j2date: [astronomical year, month, day] of a Julian day number (>= -32044). */
function j2date(jd: number): [number, number, number] {
  let julian = jd + 32044
  let quad = Math.floor(julian / 146097)
  const extra = (julian - quad * 146097) * 4 + 3
  julian += 60 + quad * 3 + Math.floor(extra / 146097)
  quad = Math.floor(julian / 1461)
  julian -= quad * 1461
  let y = Math.floor((julian * 4) / 1461)
  julian = (y !== 0 ? (julian + 305) % 365 : (julian + 306) % 366) + 123
  y += quad * 4
  quad = Math.floor((julian * 2141) / 65536)
  const day = julian - Math.floor((7834 * quad) / 256)
  const month = ((quad + 10) % 12) + 1
  return [y - 4800, month, day]
}

/** IS_VALID_JULIAN: the year and month lie in 4714-11 BC .. 5874898-06. */
function isValidJulian(year: number, month: number): boolean {
  return (year > -4713 || (year === -4713 && month >= 11)) && (year < 5874898 || (year === 5874898 && month < 6))
}

/** ISO date text of an astronomical year: 4+ digit year, ' BC' for year <= 0. */
function formatDate(year: number, month: number, day: number): string {
  return dateFields(ISO_OUTPUT, year, month, day) + era(year)
}

function fieldOverflow(input: string, datestyleHint = false): WireError {
  return new WireError(SqlState.DatetimeFieldOverflow, `date/time field value out of range: "${input}"`, datestyleHint ? { hint: 'Perhaps you need a different "DateStyle" setting.' } : {})
}

/** A year field as strtoint reads it: beyond INT_MAX is a field overflow. */
function parseYearField(digits: string, input: string): number {
  const significant = digits.replace(/^0+/, '')
  if (significant.length > 10 || Number(significant) > INT32_MAX) throw fieldOverflow(input)
  return Number(significant)
}

/** ValidateDate: AD/BC year, month and day ranges; returns the astronomical year. */
function validateDate(year: number, month: number, day: number, bc: boolean, input: string): number {
  if (year <= 0) throw fieldOverflow(input)
  const astronomical = bc ? 1 - year : year
  if (month < 1 || month > 12 || day < 1 || day > 31) throw fieldOverflow(input, true)
  if (day > daysInMonth(astronomical, month)) throw fieldOverflow(input)
  return astronomical
}

/** PostgreSQL's `SET TIME ZONE` spellings of UTC, for the zero-cost path. */
const UTC_NAMES = new Set(['utc', 'etc/utc', 'gmt', 'etc/gmt', 'uct', 'etc/uct', 'universal', 'etc/universal', 'zulu', 'etc/zulu', 'greenwich', 'etc/greenwich', 'gmt0', 'etc/gmt0', 'gmt+0', 'gmt-0', 'etc/gmt+0', 'etc/gmt-0'])

/** `compute` with its results kept per key (session settings: few distinct values), forgotten all at once past `limit`. */
function memoized<T>(compute: (key: string) => T, limit: number): (key: string) => T {
  const results = new Map<string, T>()
  return (key) => {
    let result = results.get(key)
    if (result === undefined) {
      result = compute(key)
      if (results.size >= limit) results.clear()
      results.set(key, result)
    }
    return result
  }
}

/** How a DateStyle prints dates: the style, and whether the day comes before the month. */
export interface DateOutput {
  readonly style: 'ISO' | 'SQL' | 'Postgres' | 'German'
  readonly dayFirst: boolean
}

const ISO_OUTPUT: DateOutput = { style: 'ISO', dayFirst: false }

/**
 * The output of a DateStyle ParameterStatus ('SQL, DMY'): PostgreSQL always reports
 * the style first and the field order second. Unknown words count as ISO and MDY.
 */
export const dateOutput = memoized((dateStyle: string): DateOutput => {
  const words = dateStyle.toLowerCase().split(/[\s,]+/)
  const style = words.includes('sql') ? 'SQL' : words.includes('postgres') ? 'Postgres' : words.includes('german') ? 'German' : 'ISO'
  // The field order only matters to SQL and Postgres output (German is always day first).
  return style === 'ISO' ? ISO_OUTPUT : { style, dayFirst: words.includes('dmy') }
}, 64)

const MONTH_ABBREVIATIONS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const
const DAY_ABBREVIATIONS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const

/** The year as PostgreSQL prints it: AD years as they are, year 0 as 1 (BC), at least 4 digits. */
function shownYear(year: number): string {
  return String(year > 0 ? year : 1 - year).padStart(4, '0')
}

/** The era suffix PostgreSQL appends to dates and timestamps: ' BC' for astronomical year 0 and before. */
function era(year: number): string {
  return year > 0 ? '' : ' BC'
}

/** EncodeDateOnly's date fields (astronomical year) in a DateStyle, without the era. */
function dateFields(output: DateOutput, year: number, month: number, day: number): string {
  switch (output.style) {
    case 'ISO':
      return `${shownYear(year)}-${pad2(month)}-${pad2(day)}`
    case 'SQL':
      return `${output.dayFirst ? `${pad2(day)}/${pad2(month)}` : `${pad2(month)}/${pad2(day)}`}/${shownYear(year)}`
    case 'German':
      return `${pad2(day)}.${pad2(month)}.${shownYear(year)}`
    case 'Postgres':
      return `${output.dayFirst ? `${pad2(day)}-${pad2(month)}` : `${pad2(month)}-${pad2(day)}`}-${shownYear(year)}`
  }
}

// ---------------------------------------------------------------------------
// Time zones

interface ZoneRules {
  /** Set for zones without transitions. */
  readonly fixedOffset: number | undefined
  /** Seconds east of UTC at a Unix time (seconds). */
  offsetAt(unixSeconds: number): number
}

function fixedZone(offset: number): ZoneRules {
  return { fixedOffset: offset, offsetAt: () => offset }
}

const UTC_ZONE = fixedZone(0)
/** The Gregorian calendar (and so every DST rule) repeats every 400 years = 146097 days. */
const GREGORIAN_CYCLE_SECONDS = 146097 * SECS_PER_DAY
/** Before 1600 no zone has transitions in tzdata: the offset there is the zone's first (LMT). */
const ZONE_CLAMP_LOW = -11676096000
/**
 * Times from 2800 on are moved into 2400..2799 by whole 400-year cycles: far enough
 * from today that only a zone's final (POSIX TZ) rule applies, as for PostgreSQL.
 */
const ZONE_SHIFT_BASE = 13569465600
const ZONE_SHIFT_HIGH = ZONE_SHIFT_BASE + GREGORIAN_CYCLE_SECONDS
const LONG_OFFSET = /GMT(?:([+-])(\d{2}):(\d{2})(?::(\d{2}))?)?$/

/** A zone known to ICU. Offsets are cached per hour when they do not change within it. */
class IntlZone implements ZoneRules {
  readonly fixedOffset = undefined
  private readonly format: Intl.DateTimeFormat
  private readonly hours = new Map<number, number>()

  constructor(timeZone: string) {
    this.format = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'longOffset' })
  }

  offsetAt(unixSeconds: number): number {
    let t = unixSeconds
    if (t < ZONE_CLAMP_LOW) t = ZONE_CLAMP_LOW
    else if (t >= ZONE_SHIFT_HIGH) t -= Math.floor((t - ZONE_SHIFT_BASE) / GREGORIAN_CYCLE_SECONDS) * GREGORIAN_CYCLE_SECONDS
    const hour = Math.floor(t / 3600)
    const cached = this.hours.get(hour)
    if (cached !== undefined) return cached
    const offset = this.lookup(t)
    const start = hour * 3600
    if (this.lookup(start) === offset && this.lookup(start + 3599) === offset) {
      if (this.hours.size >= 4096) this.hours.clear()
      this.hours.set(hour, offset)
    }
    return offset
  }

  private lookup(t: number): number {
    const match = LONG_OFFSET.exec(this.format.format(t * 1000))
    if (match === null) throw new WireError(SqlState.FeatureNotSupported, `time zone "${this.format.resolvedOptions().timeZone}" has no offset pgveil can read`)
    if (match[1] === undefined) return 0
    const seconds = Number(match[2]) * 3600 + Number(match[3]) * 60 + Number(match[4] ?? 0)
    return match[1] === '-' ? -seconds : seconds
  }
}

/** POSIX TZ without DST rules: '<+02>-02', 'UTC0', 'EST5'; the POSIX sign counts west. */
const POSIX_FIXED_ZONE = /^(?:<[A-Za-z0-9:+-]+>|[A-Za-z]{3,})([+-]?)(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?$/
/** A bare number of hours east of UTC, as `SET TIME ZONE 2` reads it. */
const HOURS_ZONE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/

function resolveZone(name: string): ZoneRules | null {
  const lower = name.toLowerCase()
  if (UTC_NAMES.has(lower)) return UTC_ZONE
  if (HOURS_ZONE.test(name)) {
    const hours = Number(name)
    return Math.abs(hours) < 168 ? fixedZone(Math.trunc(hours * 3600)) : null
  }
  const zoneName = lower.startsWith('posix/') ? name.slice(6) : name
  // right/ zones count leap seconds, which PostgreSQL does not; a comma starts POSIX DST rules.
  if (lower.startsWith('right/') || zoneName.includes(',')) return null
  try {
    return new IntlZone(zoneName)
  } catch {
    // not an IANA name ICU knows
  }
  const posix = POSIX_FIXED_ZONE.exec(zoneName)
  if (posix === null) return null
  const seconds = Number(posix[2]) * 3600 + Number(posix[3] ?? 0) * 60 + Number(posix[4] ?? 0)
  return fixedZone(posix[1] === '-' ? seconds : -seconds)
}

const zoneRules = memoized(resolveZone, 1024)

/** Whether `timeZone` (a TimeZone ParameterStatus) is one these codecs can print and read. */
export function isSupportedTimeZone(timeZone: string): boolean {
  return zoneRules(timeZone) !== null
}

function sessionZone(timeZone: string): ZoneRules {
  const rules = zoneRules(timeZone)
  if (rules === null) {
    throw new WireError(SqlState.FeatureNotSupported, `time zone "${timeZone}" is not supported by pgveil for encrypted columns`, {
      hint: 'use an IANA zone name (Europe/Paris), UTC, or a fixed offset',
    })
  }
  return rules
}

const UTC_ABBREVIATED = new Set(['utc', 'etc/utc', 'uct', 'etc/uct', 'universal', 'etc/universal', 'zulu', 'etc/zulu'])
/** Etc/GMT+5 is five hours west: its abbreviation is '-05'. */
const ETC_GMT_ZONE = /^etc\/gmt([+-])(\d{1,2})$/
/** A POSIX TZ's standard-time name: '<+02>' or letters, before its offset. */
const POSIX_ZONE_NAME = /^(?:<([A-Za-z0-9:+-]+)>|([A-Za-z]{3,}))[+-]?\d/

/**
 * The abbreviation PostgreSQL prints after a timestamptz in the SQL, German and
 * Postgres DateStyles, for zones where it is one fixed string; null for the others
 * (IANA zones with a history of abbreviations, which PostgreSQL takes from its tzdata).
 */
export const zoneAbbreviation = memoized(fixedAbbreviation, 1024)

function fixedAbbreviation(timeZone: string): string | null {
  const name = timeZone.toLowerCase().replace(/^posix\//, '')
  if (UTC_ABBREVIATED.has(name)) return 'UTC'
  if (UTC_NAMES.has(name)) return 'GMT'
  const etc = ETC_GMT_ZONE.exec(name)
  if (etc !== null) return `${etc[1] === '+' ? '-' : '+'}${etc[2]!.padStart(2, '0')}`
  // A POSIX fixed zone ('<+02>-02', 'EST5', 'UTC0'), unless ICU knows the name as an IANA zone.
  const posix = POSIX_ZONE_NAME.exec(timeZone)
  if (posix !== null && zoneRules(timeZone)?.fixedOffset !== undefined) return posix[1] ?? posix[2]!
  return null
}

/** Whether protected timestamptz values can be printed in text for this session: ISO output, or a zone whose abbreviation pgveil knows. */
export function printsTimestamptzText(session: SessionFormat): boolean {
  return dateOutput(session.dateStyle) === ISO_OUTPUT || zoneAbbreviation(session.timeZone) !== null
}

function staleFormat(change: string): WireError {
  return new WireError(SqlState.FeatureNotSupported, `pgveil cannot print encrypted dates and timestamps after ${change} in the same batch: PostgreSQL reports the new setting only at Sync`, {
    hint: `send Sync after ${change} (run it as a query of its own) before reading encrypted date or timestamptz columns in text format`,
  })
}

function abbreviationFor(session: SessionFormat): string {
  const abbreviation = zoneAbbreviation(session.timeZone)
  if (abbreviation === null) {
    throw new WireError(SqlState.FeatureNotSupported, `pgveil cannot print encrypted timestamptz values under DateStyle "${session.dateStyle}" in time zone "${session.timeZone}": PostgreSQL prints that zone's abbreviation from its own tzdata`, {
      hint: 'SET DateStyle = ISO (or read the column in binary format, or SET TimeZone = UTC) for sessions that read encrypted timestamptz columns',
    })
  }
  return abbreviation
}

/**
 * DetermineTimeZoneOffset: local wall-clock seconds → Unix seconds. A time skipped by a
 * spring-forward transition takes the offset before it; a repeated time in a fall-back
 * transition takes the later instant (the offset after it).
 */
function localToUnix(zone: ZoneRules, local: number): number {
  if (zone.fixedOffset !== undefined) return local - zone.fixedOffset
  const before = zone.offsetAt(local - SECS_PER_DAY)
  const after = zone.offsetAt(local + SECS_PER_DAY)
  const beforeTime = local - before
  if (before === after) return beforeTime
  const afterTime = local - after
  const beforeFits = zone.offsetAt(beforeTime) === before
  const afterFits = zone.offsetAt(afterTime) === after
  if (beforeFits && !afterFits) return beforeTime
  if (afterFits && !beforeFits) return afterTime
  return Math.max(beforeTime, afterTime)
}

// ---------------------------------------------------------------------------
// date

const DATE_INPUT = /^(\d+)-(\d{1,2})-(\d{1,2})$/
/** A trailing AD/BC, after whitespace or straight after a digit (not the end of a zone name like 'Asia/Baghdad'). */
const ERA_SUFFIX = /(?:[ \t\n\v\f\r]+|(?<=\d))(ad|bc)$/i

/** Trimmed input without its era, and whether the era is BC. */
function splitEra(input: string): { rest: string; bc: boolean } {
  const trimmed = trimSpaces(input)
  const era = ERA_SUFFIX.exec(trimmed)
  if (era === null) return { rest: trimmed, bc: false }
  return { rest: trimSpaces(trimmed.slice(0, era.index)), bc: era[1]!.toLowerCase() === 'bc' }
}
const CANONICAL_DATE = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/

function notIsoDate(sqlName: string, input: string, accepted: string): WireError {
  return new WireError(SqlState.InvalidDatetimeFormat, `invalid input syntax for type ${sqlName}: "${input}"`, {
    hint: `pgveil accepts ${accepted} for encrypted columns`,
  })
}

function dateOutOfRange(input: string): WireError {
  return new WireError(SqlState.DatetimeFieldOverflow, `date out of range: "${input}"`)
}

function dateFromText(input: string): string {
  checkClientText(input)
  const { rest, bc } = splitEra(input)
  // PostgreSQL ignores an era after the special words.
  const word = asciiLower(rest)
  if (word === 'infinity' || word === '+infinity') return 'infinity'
  if (word === '-infinity') return '-infinity'
  if (word === 'epoch') return '1970-01-01'
  const match = DATE_INPUT.exec(rest)
  // A 1-2 digit year is read through DateStyle's field order and the 2-digit-year rule.
  if (match === null || match[1]!.length < 3) {
    throw notIsoDate('date', input, 'dates as YYYY-MM-DD (optionally followed by BC), infinity, -infinity or epoch')
  }
  const year = parseYearField(match[1]!, input)
  const month = Number(match[2])
  const day = Number(match[3])
  const astronomical = validateDate(year, month, day, bc, input)
  if (!isValidJulian(astronomical, month)) throw dateOutOfRange(input)
  const days = date2j(astronomical, month, day) - POSTGRES_EPOCH_JDATE
  if (days < MIN_DATE_DAYS || days >= END_DATE_DAYS) throw dateOutOfRange(input)
  return formatDate(astronomical, month, day)
}

/** Canonical date → days since 2000-01-01 (DATE_NOBEGIN/NOEND for the infinities). */
function canonicalDateDays(canonical: string): number {
  if (canonical === 'infinity') return DATE_NOEND
  if (canonical === '-infinity') return DATE_NOBEGIN
  const match = CANONICAL_DATE.exec(canonical)
  if (match === null) throw notCanonical('date')
  const shown = Number(match[1])
  const year = match[4] === undefined ? shown : 1 - shown
  const month = Number(match[2])
  const day = Number(match[3])
  if (shown < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || !isValidJulian(year, month)) throw notCanonical('date')
  const days = date2j(year, month, day) - POSTGRES_EPOCH_JDATE
  if (days < MIN_DATE_DAYS || days >= END_DATE_DAYS) throw notCanonical('date')
  return days
}

function dateFromDays(days: number): string {
  if (days === DATE_NOEND) return 'infinity'
  if (days === DATE_NOBEGIN) return '-infinity'
  const [year, month, day] = j2date(days + POSTGRES_EPOCH_JDATE)
  return formatDate(year, month, day)
}

const dateCodec: TypeCodec = {
  type: 'date',
  sqlName: 'date',
  oid: TypeOid.date,
  arrayOid: ArrayTypeOid.date,
  typlen: 4,
  canonicalFromText: dateFromText,
  canonicalFromBinary(bytes) {
    expectLength(bytes, 4, 'date')
    const days = bytes.readInt32BE(0)
    if (days !== DATE_NOBEGIN && days !== DATE_NOEND && (days < MIN_DATE_DAYS || days >= END_DATE_DAYS)) {
      throw new WireError(SqlState.DatetimeFieldOverflow, 'date out of range')
    }
    return dateFromDays(days)
  },
  toText(canonical, session) {
    const days = canonicalDateDays(canonical)
    if (session.staleAfter !== undefined) throw staleFormat(session.staleAfter)
    const output = dateOutput(session.dateStyle)
    if (output === ISO_OUTPUT || days === DATE_NOEND || days === DATE_NOBEGIN) return canonical
    const [year, month, day] = j2date(days + POSTGRES_EPOCH_JDATE)
    return dateFields(output, year, month, day) + era(year)
  },
  toBinary(canonical) {
    const out = Buffer.allocUnsafe(4)
    out.writeInt32BE(canonicalDateDays(canonical), 0)
    return out
  },
}

// ---------------------------------------------------------------------------
// timestamptz

const WS = '[ \\t\\n\\v\\f\\r]'
const TIMESTAMP_DATE = /^(\d+)-(\d{1,2})-(\d{1,2})/
// PostgreSQL ignores a '.' without digits after the seconds.
const TIMESTAMP_TIME = new RegExp(`^(?:${WS}*[Tt]${WS}*|${WS}+)(\\d{1,2}):(\\d{1,2})(?::(\\d{1,2})(?:\\.(\\d*))?)?`)
const NUMERIC_OFFSET = /^([+-])(\d+)(?::(\d+)(?::(\d+))?)?$/
const CANONICAL_TIMESTAMP = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?\+00( BC)?$/
const ACCEPTED_TIMESTAMPS = 'timestamps as YYYY-MM-DD[ HH:MM[:SS[.ffffff]]] with an optional offset (Z, +HH, +HH:MM) or IANA zone name and BC, infinity, -infinity or epoch'

interface Timestamp {
  /** Seconds since 2000-01-01 00:00:00 UTC. */
  sec: number
  /** 0..999999 */
  usec: number
}

function timestampOutOfRange(input: string): WireError {
  return new WireError(SqlState.DatetimeFieldOverflow, `timestamp out of range: "${input}"`)
}

/** rint(): round half to even, as PostgreSQL rounds fractional seconds. */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x)
  const diff = x - floor
  if (diff > 0.5) return floor + 1
  if (diff < 0.5) return floor
  return floor % 2 === 0 ? floor : floor + 1
}

/** DecodeTimezone: seconds east of UTC of '+HH', '+HHMM', '+HH:MM[:SS]'. */
function parseNumericOffset(text: string, input: string): number {
  const match = NUMERIC_OFFSET.exec(text)
  if (match === null) throw notIsoDate('timestamp with time zone', input, ACCEPTED_TIMESTAMPS)
  let hours = Number(match[2])
  let minutes = 0
  const seconds = Number(match[4] ?? 0)
  if (match[3] !== undefined) {
    minutes = Number(match[3])
  } else if (match[2]!.length > 2) {
    // '+HHMM' run together ('+530' too); '+HHMMSS' is not read this way.
    minutes = hours % 100
    hours = Math.floor(hours / 100)
  }
  if (hours > 15 || minutes >= 60 || seconds >= 60) {
    throw new WireError(SqlState.InvalidTimeZoneDisplacementValue, `time zone displacement out of range: "${input}"`)
  }
  const offset = hours * 3600 + minutes * 60 + seconds
  return match[1] === '-' ? -offset : offset
}

function timestamptzFromText(input: string, session: SessionFormat | undefined): string {
  checkClientText(input)
  const sqlName = 'timestamp with time zone'
  const split = splitEra(input)
  let rest = split.rest
  const bc = split.bc
  const word = asciiLower(rest)
  if (word === 'infinity' || word === '+infinity') return 'infinity'
  if (word === '-infinity') return '-infinity'
  if (word === 'epoch') return '1970-01-01 00:00:00+00'
  const date = TIMESTAMP_DATE.exec(rest)
  if (date === null || date[1]!.length < 3) throw notIsoDate(sqlName, input, ACCEPTED_TIMESTAMPS)
  rest = rest.slice(date[0].length)
  let hour = 0
  let minute = 0
  let second = 0
  let usec = 0
  const time = TIMESTAMP_TIME.exec(rest)
  if (time !== null) {
    rest = rest.slice(time[0].length)
    hour = Number(time[1])
    minute = Number(time[2])
    second = Number(time[3] ?? 0)
    // strtod then rint, in doubles, exactly as ParseFractionalSecond.
    if (time[4] !== undefined && time[4] !== '') usec = roundHalfEven(Number(`0.${time[4]}`) * USECS_PER_SEC)
  } else if (/^[ \t\n\v\f\r]*[Tt]?[ \t\n\v\f\r]*\d/.test(rest)) {
    throw notIsoDate(sqlName, input, ACCEPTED_TIMESTAMPS)
  }
  const zoneText = trimSpaces(rest)
  let offset: number | undefined
  let zone: ZoneRules | undefined
  if (zoneText === '') {
    if (session === undefined) {
      throw new WireError(SqlState.InvalidDatetimeFormat, `invalid input syntax for type ${sqlName}: "${input}"`, {
        hint: 'give the value an explicit UTC offset, e.g. +00',
      })
    }
    zone = sessionZone(session.timeZone)
  } else if (zoneText.charCodeAt(0) === PLUS || zoneText.charCodeAt(0) === MINUS) {
    offset = parseNumericOffset(zoneText, input)
  } else if (/^(?:z|zulu|utc|gmt)$/i.test(zoneText)) {
    offset = 0
  } else {
    // Full zone names only: abbreviations depend on the timezone_abbreviations setting.
    const rules = zoneText.includes('/') ? zoneRules(zoneText) : null
    if (rules === null) throw notIsoDate(sqlName, input, ACCEPTED_TIMESTAMPS)
    zone = rules
  }
  const year = parseYearField(date[1]!, input)
  const month = Number(date[2])
  const day = Number(date[3])
  const astronomical = validateDate(year, month, day, bc, input)
  // time_overflows(): 24:00:00 and a leap second 60 are allowed, nothing past 24:00:00.
  if (hour > 24 || minute > 59 || second > 60 || (hour * 3600 + minute * 60 + second) * USECS_PER_SEC + usec > SECS_PER_DAY * USECS_PER_SEC) {
    throw fieldOverflow(input)
  }
  if (!isValidJulian(astronomical, month)) throw timestampOutOfRange(input)
  let local = (date2j(astronomical, month, day) - POSTGRES_EPOCH_JDATE) * SECS_PER_DAY + hour * 3600 + minute * 60 + second
  if (usec >= USECS_PER_SEC) {
    local += 1
    usec -= USECS_PER_SEC
  }
  const sec = offset !== undefined ? local - offset : localToUnix(zone!, local + POSTGRES_EPOCH_UNIX) - POSTGRES_EPOCH_UNIX
  if (sec < MIN_TIMESTAMP_SEC || sec >= END_TIMESTAMP_SEC) throw timestampOutOfRange(input)
  return formatTimestamp({ sec, usec }, 0)
}

function formatOffset(offset: number): string {
  const abs = Math.abs(offset)
  const hours = Math.floor(abs / 3600)
  const minutes = Math.floor((abs % 3600) / 60)
  const seconds = abs % 60
  const sign = offset >= 0 ? '+' : '-'
  if (seconds !== 0) return `${sign}${pad2(hours)}:${pad2(minutes)}:${pad2(seconds)}`
  if (minutes !== 0) return `${sign}${pad2(hours)}:${pad2(minutes)}`
  return `${sign}${pad2(hours)}`
}

/** An instant's local calendar fields at `offset` seconds east of UTC, and its time of day as PostgreSQL prints it (HH:MM:SS, the fraction without trailing zeros). */
function localFields(ts: Timestamp, offset: number): { days: number; year: number; month: number; day: number; time: string } {
  const local = ts.sec + offset
  const days = Math.floor(local / SECS_PER_DAY)
  const secondOfDay = local - days * SECS_PER_DAY
  const [year, month, day] = j2date(days + POSTGRES_EPOCH_JDATE)
  let time = `${pad2(Math.floor(secondOfDay / 3600))}:${pad2(Math.floor((secondOfDay % 3600) / 60))}:${pad2(secondOfDay % 60)}`
  if (ts.usec !== 0) time += `.${String(ts.usec).padStart(6, '0').replace(/0+$/, '')}`
  return { days, year, month, day, time }
}

/** EncodeDateTime, USE_ISO_DATES, at `offset` seconds east of UTC. */
function formatTimestamp(ts: Timestamp, offset: number): string {
  const { year, month, day, time } = localFields(ts, offset)
  return `${dateFields(ISO_OUTPUT, year, month, day)} ${time}${formatOffset(offset)}${era(year)}`
}

/** EncodeDateTime in the SQL, German and Postgres styles: local time at `offset`, then the zone's abbreviation. */
function formatTimestampIn(output: DateOutput, ts: Timestamp, offset: number, abbreviation: string): string {
  const { days, year, month, day, time } = localFields(ts, offset)
  if (output.style !== 'Postgres') return `${dateFields(output, year, month, day)} ${time} ${abbreviation}${era(year)}`
  // j2day: 2000-01-01 (day 0) was a Saturday.
  const weekday = DAY_ABBREVIATIONS[(((days + 6) % 7) + 7) % 7]!
  const monthName = MONTH_ABBREVIATIONS[month - 1]!
  const dayMonth = output.dayFirst ? `${pad2(day)} ${monthName}` : `${monthName} ${pad2(day)}`
  return `${weekday} ${dayMonth} ${time} ${shownYear(year)} ${abbreviation}${era(year)}`
}

/** Canonical timestamptz → instant; undefined for the infinities. */
function parseCanonicalTimestamp(canonical: string): Timestamp {
  const match = CANONICAL_TIMESTAMP.exec(canonical)
  if (match === null) throw notCanonical('timestamp with time zone')
  const shown = Number(match[1])
  const year = match[8] === undefined ? shown : 1 - shown
  const month = Number(match[2])
  const day = Number(match[3])
  const hour = Number(match[4])
  const minute = Number(match[5])
  const second = Number(match[6])
  if (shown < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59 || !isValidJulian(year, month)) {
    throw notCanonical('timestamp with time zone')
  }
  const sec = (date2j(year, month, day) - POSTGRES_EPOCH_JDATE) * SECS_PER_DAY + hour * 3600 + minute * 60 + second
  if (sec < MIN_TIMESTAMP_SEC || sec >= END_TIMESTAMP_SEC) throw notCanonical('timestamp with time zone')
  return { sec, usec: match[7] === undefined ? 0 : Number(match[7].padEnd(6, '0')) }
}

const timestamptzCodec: TypeCodec = {
  type: 'timestamptz',
  sqlName: 'timestamp with time zone',
  oid: TypeOid.timestamptz,
  arrayOid: ArrayTypeOid.timestamptz,
  typlen: 8,
  canonicalFromText: timestamptzFromText,
  canonicalFromBinary(bytes) {
    expectLength(bytes, 8, 'timestamp with time zone')
    const micros = bytes.readBigInt64BE(0)
    if (micros === DT_NOEND) return 'infinity'
    if (micros === DT_NOBEGIN) return '-infinity'
    let sec = micros / 1000000n
    if (sec * 1000000n > micros) sec -= 1n
    const ts: Timestamp = { sec: Number(sec), usec: Number(micros - sec * 1000000n) }
    if (ts.sec < MIN_TIMESTAMP_SEC || ts.sec >= END_TIMESTAMP_SEC) throw new WireError(SqlState.DatetimeFieldOverflow, 'timestamp out of range')
    return formatTimestamp(ts, 0)
  },
  toText(canonical, session) {
    if (session.staleAfter !== undefined) throw staleFormat(session.staleAfter)
    if (canonical === 'infinity' || canonical === '-infinity') return canonical
    const ts = parseCanonicalTimestamp(canonical)
    const zone = sessionZone(session.timeZone)
    const offset = zone.fixedOffset ?? zone.offsetAt(ts.sec + POSTGRES_EPOCH_UNIX)
    const output = dateOutput(session.dateStyle)
    if (output === ISO_OUTPUT) return offset === 0 ? canonical : formatTimestamp(ts, offset)
    return formatTimestampIn(output, ts, offset, abbreviationFor(session))
  },
  toBinary(canonical) {
    const out = Buffer.allocUnsafe(8)
    if (canonical === 'infinity') {
      out.writeBigInt64BE(DT_NOEND, 0)
    } else if (canonical === '-infinity') {
      out.writeBigInt64BE(DT_NOBEGIN, 0)
    } else {
      const ts = parseCanonicalTimestamp(canonical)
      out.writeBigInt64BE(BigInt(ts.sec) * 1000000n + BigInt(ts.usec), 0)
    }
    return out
  },
}

// ---------------------------------------------------------------------------
// boolean

/** parse_bool_with_len on a trimmed, lower-cased word. */
function parseBoolWord(word: string): boolean | undefined {
  switch (word[0]) {
    case 't':
      return 'true'.startsWith(word) ? true : undefined
    case 'f':
      return 'false'.startsWith(word) ? false : undefined
    case 'y':
      return 'yes'.startsWith(word) ? true : undefined
    case 'n':
      return 'no'.startsWith(word) ? false : undefined
    case 'o':
      // 'o' alone is ambiguous
      if (word.length < 2) return undefined
      if ('on'.startsWith(word)) return true
      return 'off'.startsWith(word) ? false : undefined
    case '1':
      return word.length === 1 ? true : undefined
    case '0':
      return word.length === 1 ? false : undefined
    default:
      return undefined
  }
}

const booleanCodec: TypeCodec = {
  type: 'boolean',
  sqlName: 'boolean',
  oid: TypeOid.bool,
  arrayOid: ArrayTypeOid.bool,
  typlen: 1,
  canonicalFromText(text) {
    checkClientText(text)
    const value = parseBoolWord(asciiLower(trimSpaces(text)))
    if (value === undefined) throw invalidSyntax('boolean', text)
    return value ? 't' : 'f'
  },
  canonicalFromBinary(bytes) {
    expectLength(bytes, 1, 'boolean')
    // boolrecv: any non-zero byte is true
    return bytes[0] !== 0 ? 't' : 'f'
  },
  toText(canonical) {
    if (canonical !== 't' && canonical !== 'f') throw notCanonical('boolean')
    return canonical
  },
  toBinary(canonical) {
    if (canonical !== 't' && canonical !== 'f') throw notCanonical('boolean')
    return Buffer.from([canonical === 't' ? 1 : 0])
  },
}

// ---------------------------------------------------------------------------
// uuid

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function formatUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** string_to_uuid: optional braces, a hyphen allowed after any even-numbered byte but the last. */
function uuidFromText(input: string): string {
  if (CANONICAL_UUID.test(input)) return input
  checkClientText(input)
  let i = 0
  const braces = input.charCodeAt(0) === 0x7b
  if (braces) i++
  let hex = ''
  for (let byte = 0; byte < 16; byte++) {
    if (digitValue(input.charCodeAt(i), 16) < 0 || digitValue(input.charCodeAt(i + 1), 16) < 0) throw invalidSyntax('uuid', input)
    hex += input.slice(i, i + 2)
    i += 2
    if (input.charCodeAt(i) === MINUS && byte % 2 === 1 && byte < 15) i++
  }
  if (braces) {
    if (input.charCodeAt(i) !== 0x7d) throw invalidSyntax('uuid', input)
    i++
  }
  if (i !== input.length) throw invalidSyntax('uuid', input)
  return formatUuid(hex.toLowerCase())
}

const uuidCodec: TypeCodec = {
  type: 'uuid',
  sqlName: 'uuid',
  oid: TypeOid.uuid,
  arrayOid: ArrayTypeOid.uuid,
  typlen: 16,
  canonicalFromText: uuidFromText,
  canonicalFromBinary(bytes) {
    expectLength(bytes, 16, 'uuid')
    return formatUuid(bytes.toString('hex'))
  },
  toText(canonical) {
    if (!CANONICAL_UUID.test(canonical)) throw notCanonical('uuid')
    return canonical
  },
  toBinary(canonical) {
    if (!CANONICAL_UUID.test(canonical)) throw notCanonical('uuid')
    return Buffer.from(canonical.replaceAll('-', ''), 'hex')
  },
}

// ---------------------------------------------------------------------------
// jsonb

/** Nesting deeper than this is refused (PostgreSQL's limit is its stack depth). */
const MAX_JSON_DEPTH = 2000
const JSONB_VERSION = 1

/** A parsed jsonb value: scalars already in output form, arrays, and objects with unique keys. */
type JsonNode = string | JsonNode[] | JsonObject

class JsonObject {
  /** Key → value; setting a key again keeps the last value, as jsonb does. */
  readonly members = new Map<string, JsonNode>()
}

const JSON_NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y

/** JSON_ALPHANUMERIC_CHAR: what PostgreSQL's lexer reads as one token. */
function isJsonWordChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === UNDERSCORE || c >= 0x80
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
}

function jsonSyntax(detail: string): WireError {
  return new WireError(SqlState.InvalidTextRepresentation, 'invalid input syntax for type json', { detail })
}

/** PostgreSQL's JSON lexer and parser, building jsonb's normalized tree. */
class JsonbReader {
  private pos = 0
  private depth = 0

  constructor(private readonly text: string) {}

  document(): JsonNode {
    this.skipSpace()
    const value = this.value()
    this.skipSpace()
    if (this.pos < this.text.length) throw this.expected('end of input')
    return value
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && isJsonSpace(this.text.charCodeAt(this.pos))) this.pos++
  }

  /** The token at the cursor, for messages. */
  private token(): string {
    let end = this.pos
    while (end < this.text.length && isJsonWordChar(this.text.charCodeAt(end))) end++
    return end > this.pos ? this.text.slice(this.pos, end) : this.text.slice(this.pos, this.pos + 1)
  }

  /** The error for an unexpected token; PostgreSQL's lexer first refuses words that are no token. */
  private expected(what: string): WireError {
    if (this.pos >= this.text.length) return jsonSyntax('The input string ended unexpectedly.')
    const c = this.text.charCodeAt(this.pos)
    const token = this.token()
    if (isJsonWordChar(c) && !isDigit(c) && token !== 'true' && token !== 'false' && token !== 'null') return jsonSyntax(`Token "${token}" is invalid.`)
    return jsonSyntax(`Expected ${what}, but found "${token}".`)
  }

  private enter(): void {
    if (++this.depth > MAX_JSON_DEPTH) {
      throw new WireError(SqlState.StatementTooComplex, 'stack depth limit exceeded', { detail: `pgveil reads jsonb nested at most ${MAX_JSON_DEPTH} levels deep` })
    }
  }

  private value(): JsonNode {
    const c = this.text.charCodeAt(this.pos)
    if (c === 0x7b) return this.object()
    if (c === 0x5b) return this.array()
    if (c === 0x22) return escapeJson(this.string())
    if (c === MINUS || isDigit(c)) return this.number()
    const token = this.token()
    if (token === 'true' || token === 'false' || token === 'null') {
      this.pos += token.length
      return token
    }
    throw this.expected('JSON value')
  }

  private number(): string {
    JSON_NUMBER.lastIndex = this.pos
    const match = JSON_NUMBER.exec(this.text)
    const end = match === null ? this.pos : this.pos + match[0].length
    if (match === null || (end < this.text.length && isJsonWordChar(this.text.charCodeAt(end)))) {
      let tokenEnd = Math.max(end, this.pos + 1)
      while (tokenEnd < this.text.length && isJsonWordChar(this.text.charCodeAt(tokenEnd))) tokenEnd++
      throw jsonSyntax(`Token "${this.text.slice(this.pos, tokenEnd)}" is invalid.`)
    }
    this.pos = end
    return numericFromText(match[0])
  }

  private array(): JsonNode[] {
    this.enter()
    this.pos++
    const items: JsonNode[] = []
    this.skipSpace()
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++
    } else {
      for (;;) {
        items.push(this.value())
        this.skipSpace()
        const c = this.text.charCodeAt(this.pos)
        this.pos++
        if (c === 0x5d) break
        if (c !== 0x2c) {
          this.pos--
          throw this.expected('"," or "]"')
        }
        this.skipSpace()
      }
    }
    this.depth--
    return items
  }

  private object(): JsonObject {
    this.enter()
    this.pos++
    const object = new JsonObject()
    this.skipSpace()
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++
    } else {
      for (;;) {
        if (this.text.charCodeAt(this.pos) !== 0x22) throw this.expected(object.members.size === 0 ? 'string or "}"' : 'string')
        const key = this.string()
        this.skipSpace()
        if (this.text.charCodeAt(this.pos) !== 0x3a) throw this.expected('":"')
        this.pos++
        this.skipSpace()
        const value = this.value()
        object.members.set(key, value)
        this.skipSpace()
        const c = this.text.charCodeAt(this.pos)
        this.pos++
        if (c === 0x7d) break
        if (c !== 0x2c) {
          this.pos--
          throw this.expected('"," or "}"')
        }
        this.skipSpace()
      }
    }
    this.depth--
    return object
  }

  /** A string token at the cursor, escapes resolved; surrogate pairs combined, \u0000 refused. */
  private string(): string {
    const text = this.text
    let i = this.pos + 1
    let out = ''
    let runStart = i
    let highSurrogate = -1
    const lowSurrogateMissing = (): WireError => jsonSyntax('Unicode low surrogate must follow a high surrogate.')
    for (;;) {
      if (i >= text.length) throw jsonSyntax('The input string ended unexpectedly.')
      const c = text.charCodeAt(i)
      if (c === 0x22) {
        if (highSurrogate !== -1) throw lowSurrogateMissing()
        this.pos = i + 1
        return out + text.slice(runStart, i)
      }
      if (c === 0x5c) {
        out += text.slice(runStart, i)
        const escape = text.charCodeAt(i + 1)
        if (escape === 0x75) {
          let code = 0
          for (let k = 2; k < 6; k++) {
            const d = digitValue(text.charCodeAt(i + k), 16)
            if (d < 0) throw jsonSyntax('"\\u" must be followed by four hexadecimal digits.')
            code = code * 16 + d
          }
          i += 6
          if (code >= 0xd800 && code <= 0xdbff) {
            if (highSurrogate !== -1) throw jsonSyntax('Unicode high surrogate must not follow a high surrogate.')
            highSurrogate = code
          } else if (code >= 0xdc00 && code <= 0xdfff) {
            if (highSurrogate === -1) throw lowSurrogateMissing()
            out += String.fromCharCode(highSurrogate, code)
            highSurrogate = -1
          } else {
            if (highSurrogate !== -1) throw lowSurrogateMissing()
            if (code === 0) {
              throw new WireError(SqlState.UntranslatableCharacter, 'unsupported Unicode escape sequence', { detail: '\\u0000 cannot be converted to text.' })
            }
            out += String.fromCharCode(code)
          }
        } else {
          if (i + 1 >= text.length) throw jsonSyntax('The input string ended unexpectedly.')
          if (highSurrogate !== -1) throw lowSurrogateMissing()
          const simple = JSON_SIMPLE_ESCAPES.get(escape)
          if (simple === undefined) throw jsonSyntax(`Escape sequence "\\${String.fromCodePoint(text.codePointAt(i + 1)!)}" is invalid.`)
          out += simple
          i += 2
        }
        runStart = i
        continue
      }
      if (c < 0x20) throw jsonSyntax(`Character with value 0x${c.toString(16).padStart(2, '0')} must be escaped.`)
      if (highSurrogate !== -1) throw lowSurrogateMissing()
      i++
    }
  }
}

const JSON_SIMPLE_ESCAPES: ReadonlyMap<number, string> = new Map([
  [0x22, '"'],
  [0x5c, '\\'],
  [0x2f, '/'],
  [0x62, '\b'],
  [0x66, '\f'],
  [0x6e, '\n'],
  [0x72, '\r'],
  [0x74, '\t'],
])

/** escape_json: quotes, backslashes and control characters escaped; everything else as is. */
function escapeJson(s: string): string {
  let out = '"'
  let runStart = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x20 && c !== 0x22 && c !== 0x5c) continue
    let escaped: string
    switch (c) {
      case 0x22: escaped = '\\"'; break
      case 0x5c: escaped = '\\\\'; break
      case 0x08: escaped = '\\b'; break
      case 0x0c: escaped = '\\f'; break
      case 0x0a: escaped = '\\n'; break
      case 0x0d: escaped = '\\r'; break
      case 0x09: escaped = '\\t'; break
      default: escaped = `\\u${c.toString(16).padStart(4, '0')}`
    }
    out += s.slice(runStart, i) + escaped
    runStart = i + 1
  }
  return `${out}${s.slice(runStart)}"`
}

/** Code unit → rank in code point (= UTF-8 byte) order. */
function codePointRank(unit: number): number {
  if (unit >= 0xe000) return unit - 0x800
  if (unit >= 0xd800) return unit + 0x2000
  return unit
}

/** jsonb's key order: shorter UTF-8 first, then bytewise. */
function compareJsonbKeys(a: string, b: string): number {
  const lengthDifference = Buffer.byteLength(a, 'utf8') - Buffer.byteLength(b, 'utf8')
  if (lengthDifference !== 0) return lengthDifference
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return codePointRank(x) - codePointRank(y)
  }
  return a.length - b.length
}

/** JsonbToCString without indentation. */
function jsonbToText(node: JsonNode): string {
  if (typeof node === 'string') return node
  if (Array.isArray(node)) return `[${node.map(jsonbToText).join(', ')}]`
  const keys = [...node.members.keys()].sort(compareJsonbKeys)
  return `{${keys.map((key) => `${escapeJson(key)}: ${jsonbToText(node.members.get(key)!)}`).join(', ')}}`
}

function jsonbFromText(input: string): string {
  checkClientText(input)
  return jsonbToText(new JsonbReader(input).document())
}

const jsonbCodec: TypeCodec = {
  type: 'jsonb',
  sqlName: 'jsonb',
  oid: TypeOid.jsonb,
  arrayOid: ArrayTypeOid.jsonb,
  typlen: -1,
  canonicalFromText: jsonbFromText,
  canonicalFromBinary(bytes) {
    if (bytes.length < 1) throw badBinary('jsonb', 'missing version byte')
    if (bytes[0] !== JSONB_VERSION) throw new WireError(SqlState.InvalidBinaryRepresentation, `unsupported jsonb version number ${bytes[0]}`)
    return jsonbFromText(decodeClientUtf8(bytes.subarray(1)))
  },
  // The canonical text is jsonb's own output; re-parsing every cell would double the cost.
  toText(canonical) {
    return canonical
  },
  toBinary(canonical) {
    const out = Buffer.allocUnsafe(1 + Buffer.byteLength(canonical, 'utf8'))
    out[0] = JSONB_VERSION
    out.write(canonical, 1, 'utf8')
    return out
  },
}

// ---------------------------------------------------------------------------
// Registry

export const TYPE_CODECS: Readonly<Record<PolicyType, TypeCodec>> = {
  text: textCodec,
  smallint: integerCodec(SMALLINT, TypeOid.int2, ArrayTypeOid.int2),
  integer: integerCodec(INTEGER, TypeOid.int4, ArrayTypeOid.int4),
  bigint: integerCodec(BIGINT, TypeOid.int8, ArrayTypeOid.int8),
  numeric: numericCodec,
  date: dateCodec,
  timestamptz: timestamptzCodec,
  boolean: booleanCodec,
  uuid: uuidCodec,
  jsonb: jsonbCodec,
}

const POLICY_TYPE_NAMES: ReadonlyMap<string, PolicyType> = new Map([
  ['text', 'text'],
  ['smallint', 'smallint'],
  ['int2', 'smallint'],
  ['integer', 'integer'],
  ['int', 'integer'],
  ['int4', 'integer'],
  ['bigint', 'bigint'],
  ['int8', 'bigint'],
  ['numeric', 'numeric'],
  ['decimal', 'numeric'],
  ['date', 'date'],
  ['timestamptz', 'timestamptz'],
  ['timestamp with time zone', 'timestamptz'],
  ['boolean', 'boolean'],
  ['bool', 'boolean'],
  ['uuid', 'uuid'],
  ['jsonb', 'jsonb'],
])

/**
 * The policy type an operator's spelling names ('int4', 'Timestamp With Time Zone',
 * 'decimal'), or undefined. Case and runs of whitespace do not matter.
 */
export function policyTypeFromName(name: string): PolicyType | undefined {
  return POLICY_TYPE_NAMES.get(name.trim().toLowerCase().replace(/\s+/g, ' '))
}
