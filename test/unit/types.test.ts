/**
 * Unit tests of the type codecs (`protocol/types.ts`). Expected canonical texts and
 * binary bytes are written by hand; the bytes were taken from PostgreSQL's send
 * functions (`int4send`, `numeric_send`, …) and its text output, never from the code
 * under test. `test/integration/types-oracle.test.ts` compares the same codecs with a
 * live PostgreSQL on thousands of generated values.
 */
import { describe, expect, it } from 'vitest'
import { WireError } from '../../protocol/errors.js'
import {
  ArrayTypeOid,
  POLICY_TYPES,
  TYPE_CODECS,
  TypeOid,
  dateOutput,
  isSupportedTimeZone,
  zoneAbbreviation,
  policyTypeFromName,
  type PolicyType,
  type SessionFormat,
} from '../../protocol/types.js'
import { thrown } from './thrown.js'

const UTC: SessionFormat = { timeZone: 'UTC', dateStyle: 'ISO, MDY', integerDatetimes: true }
const inZone = (timeZone: string): SessionFormat => ({ ...UTC, timeZone })
const bytes = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex')

const caught = (fn: () => unknown): WireError => thrown(fn, WireError)

/** The error as the client would see it: SQLSTATE, message and (when asked) hint or detail. */
function expectRefused(fn: () => unknown, sqlState: string, message: string | RegExp, extra: { hint?: RegExp; detail?: string } = {}): void {
  const error = caught(fn)
  expect(error.sqlState).toBe(sqlState)
  if (typeof message === 'string') expect(error.message).toBe(message)
  else expect(error.message).toMatch(message)
  if (extra.hint !== undefined) expect(error.hint).toMatch(extra.hint)
  if (extra.detail !== undefined) expect(error.detail).toBe(extra.detail)
}

/**
 * One value both ways: text input → canonical; canonical → binary (hand-written
 * bytes) → canonical; canonical → text output in UTC.
 */
function expectValue(type: PolicyType, input: string, canonical: string, binary: string, session: SessionFormat = UTC): void {
  const codec = TYPE_CODECS[type]
  expect(codec.canonicalFromText(input, session)).toBe(canonical)
  expect(codec.toBinary(canonical).toString('hex')).toBe(binary.replace(/\s+/g, ''))
  expect(codec.canonicalFromBinary(bytes(binary))).toBe(canonical)
  expect(codec.toText(canonical, session)).toBe(canonical)
}

describe('registry', () => {
  it('has a codec for every policy type, with PostgreSQL OIDs and sizes', () => {
    expect(Object.keys(TYPE_CODECS).sort()).toEqual([...POLICY_TYPES].sort())
    const expected: Record<PolicyType, [number, number, number, string]> = {
      text: [25, 1009, -1, 'text'],
      smallint: [21, 1005, 2, 'smallint'],
      integer: [23, 1007, 4, 'integer'],
      bigint: [20, 1016, 8, 'bigint'],
      numeric: [1700, 1231, -1, 'numeric'],
      date: [1082, 1182, 4, 'date'],
      timestamptz: [1184, 1185, 8, 'timestamp with time zone'],
      boolean: [16, 1000, 1, 'boolean'],
      uuid: [2950, 2951, 16, 'uuid'],
      jsonb: [3802, 3807, -1, 'jsonb'],
    }
    for (const type of POLICY_TYPES) {
      const codec = TYPE_CODECS[type]
      expect([codec.oid, codec.arrayOid, codec.typlen, codec.sqlName], type).toEqual(expected[type])
      expect(codec.type).toBe(type)
    }
    expect(TypeOid.bytea).toBe(17)
    expect(ArrayTypeOid.bytea).toBe(1001)
  })

  it.each([
    ['text', 'text'],
    ['integer', 'integer'],
    ['int', 'integer'],
    ['INT4', 'integer'],
    ['bigint', 'bigint'],
    ['int8', 'bigint'],
    ['smallint', 'smallint'],
    ['int2', 'smallint'],
    ['numeric', 'numeric'],
    ['decimal', 'numeric'],
    ['date', 'date'],
    ['timestamptz', 'timestamptz'],
    ['timestamp with time zone', 'timestamptz'],
    ['  Timestamp   With\tTime Zone ', 'timestamptz'],
    ['boolean', 'boolean'],
    ['bool', 'boolean'],
    ['uuid', 'uuid'],
    ['jsonb', 'jsonb'],
  ])('policyTypeFromName(%j) is %s', (name, type) => {
    expect(policyTypeFromName(name)).toBe(type)
  })

  it.each(['varchar', 'json', 'timestamp', 'timestamp without time zone', 'float8', 'int16', 'bytea', ''])('policyTypeFromName(%j) is undefined', (name) => {
    expect(policyTypeFromName(name)).toBeUndefined()
  })

  it('reads the output style and field order of a DateStyle', () => {
    expect(dateOutput('ISO, MDY')).toEqual({ style: 'ISO', dayFirst: false })
    expect(dateOutput('ISO, DMY')).toEqual({ style: 'ISO', dayFirst: false })
    expect(dateOutput('SQL, DMY')).toEqual({ style: 'SQL', dayFirst: true })
    expect(dateOutput('SQL, MDY')).toEqual({ style: 'SQL', dayFirst: false })
    expect(dateOutput('Postgres, YMD')).toEqual({ style: 'Postgres', dayFirst: false })
    expect(dateOutput('German, DMY')).toEqual({ style: 'German', dayFirst: true })
  })

  it.each([
    ['UTC', 'UTC'],
    ['Etc/UCT', 'UTC'],
    ['Zulu', 'UTC'],
    ['posix/UTC', 'UTC'],
    ['GMT', 'GMT'],
    ['Greenwich', 'GMT'],
    ['Etc/GMT+5', '-05'],
    ['Etc/GMT-14', '+14'],
    ['posix/Etc/GMT-3', '+03'],
    ['<+02>-02', '+02'],
    ['<-03:30>+03:30', '-03:30'],
    ['EST5', 'EST'],
    ['UTC0', 'UTC'],
    ['Europe/Paris', null],
    ['America/New_York', null],
    ['EST5EDT', null],
  ])('zoneAbbreviation(%j) is %j', (zone, abbreviation) => {
    expect(zoneAbbreviation(zone)).toBe(abbreviation)
  })

  it.each([
    ['UTC', true],
    ['Etc/UTC', true],
    ['GMT', true],
    ['Europe/Paris', true],
    ['europe/paris', true],
    ['posix/Europe/Paris', true],
    ['America/New_York', true],
    ['EST5EDT', true],
    ['Etc/GMT+5', true],
    ['<+02>-02', true],
    ['<-08:30>+08:30', true],
    ['UTC0', true],
    ['+02', true],
    ['5.5', true],
    ['right/Europe/Paris', false],
    ['Mars/Olympus_Mons', false],
    ['<+02>-02<+03>,M3.5.0,M10.5.0', false],
    ['localtime', false],
    ['', false],
  ])('isSupportedTimeZone(%j) is %s', (zone, supported) => {
    expect(isSupportedTimeZone(zone)).toBe(supported)
  })
})

describe('text', () => {
  it.each([
    ['héllo', '68c3a96c6c6f'],
    ['', ''],
    [' spaces ', '2073706163657320'],
    ['😀', 'f09f9880'],
    ['\ufeffbom', 'efbbbf626f6d'],
    ['a\u0001b', '610162'],
    ['line\nbreak', '6c696e650a627265616b'],
  ])('%j is kept as is', (input, binary) => {
    expectValue('text', input, input, binary)
  })

  it('refuses NUL and lone surrogates like PostgreSQL refuses their bytes', () => {
    expectRefused(() => TYPE_CODECS.text.canonicalFromText('a\u0000b'), '22021', 'invalid byte sequence for encoding "UTF8": 0x00')
    expectRefused(() => TYPE_CODECS.text.canonicalFromText('a\ud800b'), '22021', 'invalid byte sequence for encoding "UTF8": 0xed 0xa0 0x80')
    expectRefused(() => TYPE_CODECS.text.canonicalFromText('\udfff'), '22021', 'invalid byte sequence for encoding "UTF8": 0xed 0xbf 0xbf')
  })

  it.each([
    ['41c328', '0xc3 0x28'],
    ['ff', '0xff'],
    ['41e282', '0xe2 0x82'],
    ['eda080', '0xed 0xa0 0x80'],
    ['c0af', '0xc0 0xaf'],
    ['f4908080', '0xf4 0x90 0x80 0x80'],
    ['610062', '0x00'],
    ['80', '0x80'],
  ])('binary %s is refused, naming %s', (hex, named) => {
    expectRefused(() => TYPE_CODECS.text.canonicalFromBinary(bytes(hex)), '22021', `invalid byte sequence for encoding "UTF8": ${named}`)
  })
})

describe('smallint, integer, bigint', () => {
  it.each([
    ['smallint', '0', '0', '0000'],
    ['smallint', '-0', '0', '0000'],
    ['smallint', ' +42 ', '42', '002a'],
    ['smallint', '-1', '-1', 'ffff'],
    ['smallint', '32767', '32767', '7fff'],
    ['smallint', '-32768', '-32768', '8000'],
    ['smallint', '0x7F', '127', '007f'],
    ['smallint', '-0o17', '-15', 'fff1'],
    ['smallint', '0b1_0', '2', '0002'],
    ['smallint', '1_000', '1000', '03e8'],
    ['integer', '42', '42', '0000002a'],
    ['integer', '-42', '-42', 'ffffffd6'],
    ['integer', '\t007\n', '7', '00000007'],
    ['integer', '2147483647', '2147483647', '7fffffff'],
    ['integer', '-2147483648', '-2147483648', '80000000'],
    ['integer', '1_000_000', '1000000', '000f4240'],
    ['integer', '0x7FFFFFFF', '2147483647', '7fffffff'],
    ['integer', '-0x80000000', '-2147483648', '80000000'],
    ['integer', '0x_1F', '31', '0000001f'],
    ['bigint', '0', '0', '0000000000000000'],
    ['bigint', '1234567890123', '1234567890123', '0000011f71fb04cb'],
    ['bigint', '9223372036854775807', '9223372036854775807', '7fffffffffffffff'],
    ['bigint', '-9223372036854775808', '-9223372036854775808', '8000000000000000'],
    ['bigint', '+0009223372036854775807 ', '9223372036854775807', '7fffffffffffffff'],
  ] as const)('%s %j → %s', (type, input, canonical, binary) => {
    expectValue(type, input, canonical, binary)
  })

  it.each([
    ['integer', 'abc', '22P02', 'invalid input syntax for type integer: "abc"'],
    ['integer', '', '22P02', 'invalid input syntax for type integer: ""'],
    ['integer', '  ', '22P02', 'invalid input syntax for type integer: "  "'],
    ['integer', '1.5', '22P02', 'invalid input syntax for type integer: "1.5"'],
    ['integer', '1e3', '22P02', 'invalid input syntax for type integer: "1e3"'],
    ['integer', '+-1', '22P02', 'invalid input syntax for type integer: "+-1"'],
    ['integer', '1 2', '22P02', 'invalid input syntax for type integer: "1 2"'],
    ['integer', '_1', '22P02', 'invalid input syntax for type integer: "_1"'],
    ['integer', '1_', '22P02', 'invalid input syntax for type integer: "1_"'],
    ['integer', '1__0', '22P02', 'invalid input syntax for type integer: "1__0"'],
    ['integer', '0x', '22P02', 'invalid input syntax for type integer: "0x"'],
    ['integer', '0o8', '22P02', 'invalid input syntax for type integer: "0o8"'],
    ['integer', '١٢', '22P02', 'invalid input syntax for type integer: "١٢"'],
    ['integer', '2147483648', '22003', 'value "2147483648" is out of range for type integer'],
    ['integer', '-2147483649', '22003', 'value "-2147483649" is out of range for type integer'],
    ['integer', '0x80000000', '22003', 'value "0x80000000" is out of range for type integer'],
    // PostgreSQL checks for overflow digit by digit, before the trailing junk.
    ['integer', '99999999999x', '22003', 'value "99999999999x" is out of range for type integer'],
    ['integer', '2147483649x', '22P02', 'invalid input syntax for type integer: "2147483649x"'],
    ['smallint', '32768', '22003', 'value "32768" is out of range for type smallint'],
    ['smallint', '-32769', '22003', 'value "-32769" is out of range for type smallint'],
    ['bigint', '9223372036854775808', '22003', 'value "9223372036854775808" is out of range for type bigint'],
    ['bigint', '-9223372036854775809', '22003', 'value "-9223372036854775809" is out of range for type bigint'],
    ['bigint', 'x', '22P02', 'invalid input syntax for type bigint: "x"'],
  ] as const)('%s %j is refused with %s', (type, input, sqlState, message) => {
    expectRefused(() => TYPE_CODECS[type].canonicalFromText(input), sqlState, message)
  })

  it('refuses binary input of the wrong length', () => {
    expectRefused(() => TYPE_CODECS.smallint.canonicalFromBinary(bytes('00')), '22P03', 'incorrect binary data format for type smallint: expected 2 bytes, got 1')
    expectRefused(() => TYPE_CODECS.integer.canonicalFromBinary(bytes('0000000001')), '22P03', /integer: expected 4 bytes, got 5/)
    expectRefused(() => TYPE_CODECS.bigint.canonicalFromBinary(Buffer.alloc(0)), '22P03', /bigint: expected 8 bytes, got 0/)
  })

  it('refuses to output a stored value that is not canonical', () => {
    for (const bad of ['042', '+1', 'abc', '', '1.0']) {
      expectRefused(() => TYPE_CODECS.integer.toBinary(bad), 'XX001', 'decrypted value is not a canonical integer')
      expectRefused(() => TYPE_CODECS.integer.toText(bad, UTC), 'XX001', 'decrypted value is not a canonical integer')
    }
    expectRefused(() => TYPE_CODECS.smallint.toBinary('32768'), 'XX001', 'decrypted value is not a canonical smallint')
    expectRefused(() => TYPE_CODECS.integer.toText('2147483648', UTC), 'XX001', 'decrypted value is not a canonical integer')
    expectRefused(() => TYPE_CODECS.bigint.toBinary('9223372036854775808'), 'XX001', 'decrypted value is not a canonical bigint')
  })
})

describe('numeric', () => {
  it.each([
    ['0', '0', '0000 0000 0000 0000'],
    ['-0', '0', '0000 0000 0000 0000'],
    ['0.00', '0.00', '0000 0000 0000 0002'],
    ['-0.00', '0.00', '0000 0000 0000 0002'],
    ['1.50', '1.50', '0002 0000 0000 0002 0001 1388'],
    ['-1.50', '-1.50', '0002 0000 4000 0002 0001 1388'],
    ['1e3', '1000', '0001 0000 0000 0000 03e8'],
    ['1.50e1', '15.0', '0001 0000 0000 0001 000f'],
    ['9e5', '900000', '0001 0001 0000 0000 005a'],
    ['12345.678', '12345.678', '0003 0001 0000 0003 0001 0929 1a7c'],
    ['-12345.678', '-12345.678', '0003 0001 4000 0003 0001 0929 1a7c'],
    ['-0.5', '-0.5', '0001 ffff 4000 0001 1388'],
    ['.5', '0.5', '0001 ffff 0000 0001 1388'],
    ['5.', '5', '0001 0000 0000 0000 0005'],
    ['0.0001', '0.0001', '0001 ffff 0000 0004 0001'],
    ['0.00001', '0.00001', '0001 fffe 0000 0005 03e8'],
    ['0.1e-5', '0.000001', '0001 fffe 0000 0006 0064'],
    ['1.5e-3', '0.0015', '0001 ffff 0000 0004 000f'],
    ['1e-20', '0.00000000000000000001', '0001 fffb 0000 0014 0001'],
    ['10000', '10000', '0001 0001 0000 0000 0001'],
    ['9999.9999', '9999.9999', '0002 0000 0000 0004 270f 270f'],
    ['100000000', '100000000', '0001 0002 0000 0000 0001'],
    ['  000123.4500\t', '123.4500', '0002 0000 0000 0004 007b 1194'],
    ['1_000.000_1', '1000.0001', '0002 0000 0000 0004 03e8 0001'],
    ['0x1F', '31', '0001 0000 0000 0000 001f'],
    [
      '123456789012345678901234567890.123456789012345678901234567890',
      '123456789012345678901234567890.123456789012345678901234567890',
      '0010 0007 0000 001e 000c 0d80 1ed2 04d2 162e 2334 0d80 1ed2 04d2 162e 2334 0d80 1ed2 04d2 162e 2328',
    ],
    ['NaN', 'NaN', '0000 0000 c000 0000'],
    [' nan ', 'NaN', '0000 0000 c000 0000'],
    ['Infinity', 'Infinity', '0000 0000 d000 0020'],
    ['+inf', 'Infinity', '0000 0000 d000 0020'],
    ['-Infinity', '-Infinity', '0000 0000 f000 0020'],
    ['-INF', '-Infinity', '0000 0000 f000 0020'],
  ])('%j → %s', (input, canonical, binary) => {
    expectValue('numeric', input, canonical, binary)
  })

  it('keeps up to 131072 integer digits and a scale up to 16383', () => {
    expect(TYPE_CODECS.numeric.canonicalFromText('1e131071')).toBe(`1${'0'.repeat(131071)}`)
    expect(TYPE_CODECS.numeric.canonicalFromText('1e-16383')).toBe(`0.${'0'.repeat(16382)}1`)
    expect(TYPE_CODECS.numeric.canonicalFromText('0e99999')).toBe('0')
  })

  it.each([
    ['abc', '22P02', 'invalid input syntax for type numeric: "abc"'],
    ['', '22P02', 'invalid input syntax for type numeric: ""'],
    ['.', '22P02', 'invalid input syntax for type numeric: "."'],
    ['1e', '22P02', 'invalid input syntax for type numeric: "1e"'],
    ['1..5', '22P02', 'invalid input syntax for type numeric: "1..5"'],
    ['1 .5', '22P02', 'invalid input syntax for type numeric: "1 .5"'],
    ['1._5', '22P02', 'invalid input syntax for type numeric: "1._5"'],
    ['1_.5', '22P02', 'invalid input syntax for type numeric: "1_.5"'],
    ['+NaN', '22P02', 'invalid input syntax for type numeric: "+NaN"'],
    ['infinityx', '22P02', 'invalid input syntax for type numeric: "infinityx"'],
    ['0x', '22P02', 'invalid input syntax for type numeric: "0x"'],
    ['1e131072', '22003', 'value overflows numeric format'],
    ['1e-16384', '22003', 'value overflows numeric format'],
    ['0e-16384', '22003', 'value overflows numeric format'],
    ['1e1073741824', '22003', 'value overflows numeric format'],
  ])('%j is refused with %s', (input, sqlState, message) => {
    expectRefused(() => TYPE_CODECS.numeric.canonicalFromText(input), sqlState, message)
  })

  it.each([
    ['digits beyond the scale are truncated', '0002 0000 0000 0000 0001 1388', '1'],
    ['leading zero digits are dropped', '0002 0001 0000 0000 0000 0007', '7'],
    ['negative zero is zero', '0001 0000 4000 0002 0000', '0.00'],
    ['a weight beyond the digits pads with zeros', '0001 0002 0000 0001 0003', '300000000.0'],
    ['NaN ignores its digits', '0001 0000 c000 0000 0005', 'NaN'],
  ])('binary: %s', (_what, hex, canonical) => {
    expect(TYPE_CODECS.numeric.canonicalFromBinary(bytes(hex))).toBe(canonical)
  })

  it.each([
    ['0000 0000 8000 0000', 'invalid sign in external "numeric" value'],
    ['0000 0000 0000 4000', 'invalid scale in external "numeric" value'],
    ['0001 0000 0000 0000 2710', 'invalid digit in external "numeric" value'],
    ['0001 0000 0000 0000 ffff', 'invalid digit in external "numeric" value'],
    ['0002 0000 0000 0000 0001', /numeric: 2 digits need 12 bytes, got 10/],
    ['0000 0000 0000', /numeric: expected at least 8 bytes, got 6/],
  ])('binary %s is refused', (hex, message) => {
    expectRefused(() => TYPE_CODECS.numeric.canonicalFromBinary(bytes(hex)), '22P03', message)
  })

  it('refuses to output a stored value that is not canonical', () => {
    for (const bad of ['1.', '.5', '+1', '01', 'nan', '1e3', '']) expectRefused(() => TYPE_CODECS.numeric.toBinary(bad), 'XX001', 'decrypted value is not a canonical numeric')
  })
})

describe('date', () => {
  it.each([
    ['2000-01-01', '2000-01-01', '00000000'],
    ['1999-12-31', '1999-12-31', 'ffffffff'],
    ['2024-02-29', '2024-02-29', '00002279'],
    [' 2024-2-29 AD ', '2024-02-29', '00002279'],
    ['1970-01-01', '1970-01-01', 'ffffd533'],
    ['epoch', '1970-01-01', 'ffffd533'],
    ['0001-01-01 BC', '0001-01-01 BC', 'fff4da8b'],
    ['0001-01-01 bc', '0001-01-01 BC', 'fff4da8b'],
    ['4714-11-24 BC', '4714-11-24 BC', 'ffda97a7'],
    ['5874897-12-31', '5874897-12-31', '7fda970c'],
    ['infinity', 'infinity', '7fffffff'],
    ['+Infinity', 'infinity', '7fffffff'],
    ['-infinity', '-infinity', '80000000'],
  ])('%j → %s', (input, canonical, binary) => {
    expectValue('date', input, canonical, binary)
  })

  it('reads an era straight after the day, and ignores one after the special words, as PostgreSQL', () => {
    expect(TYPE_CODECS.date.canonicalFromText('2024-01-05BC')).toBe('2024-01-05 BC')
    expect(TYPE_CODECS.date.canonicalFromText('2024-01-05 ad')).toBe('2024-01-05')
    expect(TYPE_CODECS.date.canonicalFromText('infinity BC')).toBe('infinity')
  })

  it('pads the year to four digits and reads leap days of the proleptic calendar', () => {
    expect(TYPE_CODECS.date.canonicalFromText('999-01-01')).toBe('0999-01-01')
    expect(TYPE_CODECS.date.canonicalFromText('10000-01-01')).toBe('10000-01-01')
    expect(TYPE_CODECS.date.canonicalFromText('2000-02-29')).toBe('2000-02-29')
    // 1 BC is year 0, a leap year; 5 BC is year -4.
    expect(TYPE_CODECS.date.canonicalFromText('0001-02-29 BC')).toBe('0001-02-29 BC')
    expect(TYPE_CODECS.date.canonicalFromText('0005-02-29 BC')).toBe('0005-02-29 BC')
  })

  it.each([
    ['SQL, DMY', '29/02/2024', '15/03/0044 BC'],
    ['SQL, MDY', '02/29/2024', '03/15/0044 BC'],
    ['Postgres, DMY', '29-02-2024', '15-03-0044 BC'],
    ['Postgres, MDY', '02-29-2024', '03-15-0044 BC'],
    ['German, DMY', '29.02.2024', '15.03.0044 BC'],
    ['ISO, DMY', '2024-02-29', '0044-03-15 BC'],
  ])('prints dates under DateStyle %j as PostgreSQL does', (dateStyle, leap, bc) => {
    expect(TYPE_CODECS.date.toText('2024-02-29', { ...UTC, dateStyle })).toBe(leap)
    expect(TYPE_CODECS.date.toText('0044-03-15 BC', { ...UTC, dateStyle })).toBe(bc)
    expect(TYPE_CODECS.date.toText('infinity', { ...UTC, dateStyle })).toBe('infinity')
  })

  it.each([
    ['2023-02-29', '22008', 'date/time field value out of range: "2023-02-29"', undefined],
    ['1900-02-29', '22008', 'date/time field value out of range: "1900-02-29"', undefined],
    ['0002-02-29 BC', '22008', 'date/time field value out of range: "0002-02-29 BC"', undefined],
    ['2024-04-31', '22008', 'date/time field value out of range: "2024-04-31"', undefined],
    ['2024-13-01', '22008', 'date/time field value out of range: "2024-13-01"', /DateStyle/],
    ['2024-00-10', '22008', 'date/time field value out of range: "2024-00-10"', /DateStyle/],
    ['2024-01-32', '22008', 'date/time field value out of range: "2024-01-32"', /DateStyle/],
    ['0000-01-01', '22008', 'date/time field value out of range: "0000-01-01"', undefined],
    ['99999999999-01-01', '22008', 'date/time field value out of range: "99999999999-01-01"', undefined],
    ['4714-11-23 BC', '22008', 'date out of range: "4714-11-23 BC"', undefined],
    ['5874898-01-01', '22008', 'date out of range: "5874898-01-01"', undefined],
    ['01/02/2024', '22007', 'invalid input syntax for type date: "01/02/2024"', /YYYY-MM-DD/],
    ['Jan 2 2024', '22007', 'invalid input syntax for type date: "Jan 2 2024"', /YYYY-MM-DD/],
    ['20240102', '22007', 'invalid input syntax for type date: "20240102"', /YYYY-MM-DD/],
    ['24-01-02', '22007', 'invalid input syntax for type date: "24-01-02"', /YYYY-MM-DD/],
    ['today', '22007', 'invalid input syntax for type date: "today"', /YYYY-MM-DD/],
    ['2024-01-02 12:00', '22007', 'invalid input syntax for type date: "2024-01-02 12:00"', /YYYY-MM-DD/],
    ['', '22007', 'invalid input syntax for type date: ""', /YYYY-MM-DD/],
  ])('%j is refused with %s', (input, sqlState, message, hint) => {
    expectRefused(() => TYPE_CODECS.date.canonicalFromText(input), sqlState, message, hint === undefined ? {} : { hint })
  })

  it('refuses binary dates outside PostgreSQL range and of the wrong length', () => {
    expectRefused(() => TYPE_CODECS.date.canonicalFromBinary(bytes('7fda970d')), '22008', 'date out of range')
    expectRefused(() => TYPE_CODECS.date.canonicalFromBinary(bytes('ffda97a6')), '22008', 'date out of range')
    expectRefused(() => TYPE_CODECS.date.canonicalFromBinary(bytes('000000')), '22P03', /date: expected 4 bytes, got 3/)
  })

  it('refuses to output a stored value that is not canonical', () => {
    for (const bad of ['2024-1-5', '2024-02-30', '24-01-05', '0000-01-01 BC', '0000-01-01', 'Infinity', '2024-01-05 AD']) {
      expectRefused(() => TYPE_CODECS.date.toBinary(bad), 'XX001', 'decrypted value is not a canonical date')
    }
  })
})

describe('timestamptz', () => {
  it.each([
    ['2000-01-01 00:00:00+00', '2000-01-01 00:00:00+00', '0000000000000000'],
    ['2024-01-05 12:00:00.123456789', '2024-01-05 12:00:00.123457+00', '0002b1305b345241'],
    ['epoch', '1970-01-01 00:00:00+00', 'fffca2fec4c82000'],
    ['1999-12-31T23:59:59.999999Z', '1999-12-31 23:59:59.999999+00', 'ffffffffffffffff'],
    ['2024-02-29 00:00:00.5', '2024-02-29 00:00:00.5+00', '0002b578b5940120'],
    ['0001-01-01 00:00:00 BC', '0001-01-01 00:00:00+00 BC', 'ff1fc63d1bb12000'],
    ['4714-11-24 00:00:00+00 BC', '4714-11-24 00:00:00+00 BC', 'fd0f7cc1411fa000'],
    ['294276-12-31 23:59:59.999999+00', '294276-12-31 23:59:59.999999+00', '7fffff5bb3b29fff'],
    ['infinity', 'infinity', '7fffffffffffffff'],
    [' +INFINITY ', 'infinity', '7fffffffffffffff'],
    ['-infinity', '-infinity', '8000000000000000'],
  ])('%j → %s', (input, canonical, binary) => {
    expectValue('timestamptz', input, canonical, binary)
  })

  it.each([
    '2024-01-05 12:00:00',
    '2024-01-05T12:00:00Z',
    '2024-01-05t12:00z',
    '2024-01-05 12:00:00 UTC',
    '2024-01-05 12:00:00 gmt',
    '2024-01-05 14:00:00+02',
    '2024-01-05 14:00:00 +02:00',
    '2024-01-05 17:30:00+0530',
    '2024-01-05 17:30+530',
    '2024-01-05 07:00:00-05',
    '2024-01-05 04:00:00-08:00',
    '2024-01-05 03:59:30-08:00:30',
    '2024-01-05 13:00:00 Europe/Paris',
    '2024-01-05 15:00:00 Asia/Baghdad',
    '2024-01-05 T12:00',
    '2024-01-05 12:00:00.',
    '2024-01-05 12:00:00.0000004',
    '2024-01-05 12:00:00.0000005',
  ])('%j is 2024-01-05 12:00:00 UTC', (input) => {
    expect(TYPE_CODECS.timestamptz.canonicalFromText(input, UTC)).toBe('2024-01-05 12:00:00+00')
  })

  it.each([
    // PostgreSQL rounds fractions with rint(): to the nearest microsecond, ties to even.
    ['2024-01-05 12:00:00.0000015', '2024-01-05 12:00:00.000002+00'],
    ['2024-01-05 12:00:00.0000025', '2024-01-05 12:00:00.000002+00'],
    ['2024-01-05 12:00:00.0000035', '2024-01-05 12:00:00.000004+00'],
    ['2024-01-05 12:00:00.9999995', '2024-01-05 12:00:01+00'],
    ['2024-01-05 23:59:59.9999995', '2024-01-06 00:00:00+00'],
    ['2024-01-05 12:00:00.100', '2024-01-05 12:00:00.1+00'],
    // 24:00:00 and a leap second roll over to the next day.
    ['2024-01-05 24:00:00', '2024-01-06 00:00:00+00'],
    ['2024-12-31 23:59:60', '2025-01-01 00:00:00+00'],
    ['2024-01-05', '2024-01-05 00:00:00+00'],
    ['2024-01-05 +02', '2024-01-04 22:00:00+00'],
    ['2024-01-05 12:00:00+02 BC', '2024-01-05 10:00:00+00 BC'],
  ])('%j → %s', (input, canonical) => {
    expect(TYPE_CODECS.timestamptz.canonicalFromText(input, UTC)).toBe(canonical)
  })

  it.each([
    // Europe/Paris: 02:00 → 03:00 on 2024-03-31, 03:00 → 02:00 on 2024-10-27.
    ['Europe/Paris', '2024-07-01 12:00', '2024-07-01 10:00:00+00'],
    ['Europe/Paris', '2024-03-31 01:59:59', '2024-03-31 00:59:59+00'],
    ['Europe/Paris', '2024-03-31 02:30:00', '2024-03-31 01:30:00+00'], // skipped: the offset before (+01)
    ['Europe/Paris', '2024-03-31 03:00:00', '2024-03-31 01:00:00+00'],
    ['Europe/Paris', '2024-10-27 01:59:59', '2024-10-26 23:59:59+00'],
    ['Europe/Paris', '2024-10-27 02:30:00', '2024-10-27 01:30:00+00'], // repeated: the later instant (+01)
    ['Europe/Paris', '2024-10-27 03:00:00', '2024-10-27 02:00:00+00'],
    ['posix/Europe/Paris', '2024-07-01 12:00', '2024-07-01 10:00:00+00'],
    // America/New_York: 02:00 → 03:00 on 2024-03-10, 02:00 → 01:00 on 2024-11-03.
    ['America/New_York', '2024-03-10 02:30:00', '2024-03-10 07:30:00+00'],
    ['America/New_York', '2024-11-03 01:30:00', '2024-11-03 06:30:00+00'],
    ['America/New_York', '2024-11-03 00:59:59', '2024-11-03 04:59:59+00'],
    ['Asia/Kolkata', '2024-07-01 05:30:00', '2024-07-01 00:00:00+00'],
    ['<+02>-02', '2024-01-05 14:00:00', '2024-01-05 12:00:00+00'],
    ['+02', '2024-01-05 14:00:00', '2024-01-05 12:00:00+00'],
    ['<-08:30>+08:30', '2024-01-05 03:30:00', '2024-01-05 12:00:00+00'],
    ['Europe/Paris', '2024-07-01 12:00:00+00', '2024-07-01 12:00:00+00'],
  ])('in %s, %j is %s', (zone, input, canonical) => {
    expect(TYPE_CODECS.timestamptz.canonicalFromText(input, inZone(zone))).toBe(canonical)
  })

  it.each([
    ['Europe/Paris', '2024-03-31 00:59:59+00', '2024-03-31 01:59:59+01'],
    ['Europe/Paris', '2024-03-31 01:00:00+00', '2024-03-31 03:00:00+02'],
    ['Europe/Paris', '2024-10-27 00:59:59+00', '2024-10-27 02:59:59+02'],
    ['Europe/Paris', '2024-10-27 01:00:00+00', '2024-10-27 02:00:00+01'],
    // Paris mean time (+00:09:21) until 1911-03-11.
    ['Europe/Paris', '1911-03-10 23:50:00+00', '1911-03-10 23:59:21+00:09:21'],
    ['Europe/Paris', '1911-03-11 00:00:00+00', '1911-03-11 00:00:00+00'],
    ['Europe/Paris', '1800-06-01 12:00:00+00', '1800-06-01 12:09:21+00:09:21'],
    ['Europe/Paris', '0044-03-15 12:00:00+00 BC', '0044-03-15 12:09:21+00:09:21 BC'],
    ['Europe/Paris', '200000-07-01 00:00:00+00', '200000-07-01 02:00:00+02'],
    ['Europe/Paris', '2024-07-01 00:00:00.25+00', '2024-07-01 02:00:00.25+02'],
    ['America/New_York', '2024-03-10 06:59:59+00', '2024-03-10 01:59:59-05'],
    ['America/New_York', '2024-03-10 07:00:00+00', '2024-03-10 03:00:00-04'],
    ['America/New_York', '2024-11-03 05:59:59+00', '2024-11-03 01:59:59-04'],
    ['America/New_York', '2024-11-03 06:00:00+00', '2024-11-03 01:00:00-05'],
    ['America/New_York', '1883-11-18 16:59:59+00', '1883-11-18 12:03:57-04:56:02'],
    ['America/New_York', '1883-11-18 17:00:00+00', '1883-11-18 12:00:00-05'],
    ['Asia/Kolkata', '2024-07-01 00:00:00+00', '2024-07-01 05:30:00+05:30'],
    ['Australia/Lord_Howe', '2024-04-06 14:59:59+00', '2024-04-07 01:59:59+11'],
    ['Australia/Lord_Howe', '2024-04-06 15:00:00+00', '2024-04-07 01:30:00+10:30'],
    ['<+02>-02', '2024-01-05 12:00:00+00', '2024-01-05 14:00:00+02'],
    ['<-08:30>+08:30', '2024-01-05 12:00:00+00', '2024-01-05 03:30:00-08:30'],
    ['Etc/GMT+5', '2024-01-05 12:00:00+00', '2024-01-05 07:00:00-05'],
    ['UTC0', '2024-01-05 12:00:00+00', '2024-01-05 12:00:00+00'],
    ['Europe/Paris', 'infinity', 'infinity'],
    ['Europe/Paris', '-infinity', '-infinity'],
  ])('in %s, %s prints as %s', (zone, canonical, text) => {
    expect(TYPE_CODECS.timestamptz.toText(canonical, inZone(zone))).toBe(text)
  })

  it.each([
    ['SQL, MDY', 'UTC', '12/17/1997 07:37:16.5 UTC'],
    ['SQL, DMY', 'Etc/GMT+5', '17/12/1997 02:37:16.5 -05'],
    ['German, DMY', '<+02>-02', '17.12.1997 09:37:16.5 +02'],
    ['Postgres, MDY', 'UTC', 'Wed Dec 17 07:37:16.5 1997 UTC'],
    ['Postgres, DMY', 'GMT', 'Wed 17 Dec 07:37:16.5 1997 GMT'],
  ])('prints timestamptz under DateStyle %j in %s as PostgreSQL does', (dateStyle, zone, text) => {
    expect(TYPE_CODECS.timestamptz.toText('1997-12-17 07:37:16.5+00', { ...inZone(zone), dateStyle })).toBe(text)
  })

  it('prints BC timestamps and the weekday of early dates under the Postgres style', () => {
    expect(TYPE_CODECS.timestamptz.toText('0010-03-15 12:00:00+00 BC', { ...UTC, dateStyle: 'Postgres, MDY' })).toBe('Fri Mar 15 12:00:00 0010 UTC BC')
    expect(TYPE_CODECS.timestamptz.toText('0010-03-15 12:00:00+00 BC', { ...UTC, dateStyle: 'SQL, MDY' })).toBe('03/15/0010 12:00:00 UTC BC')
    expect(TYPE_CODECS.timestamptz.toText('0001-01-01 00:00:00+00', { ...UTC, dateStyle: 'Postgres, MDY' })).toBe('Mon Jan 01 00:00:00 0001 UTC')
  })

  it('refuses with 0A000 a non-ISO DateStyle in a zone whose abbreviation only tzdata knows', () => {
    expect(() => TYPE_CODECS.timestamptz.toText('2024-01-05 12:00:00+00', { ...inZone('Europe/Paris'), dateStyle: 'SQL, DMY' })).toThrow(
      expect.objectContaining({ sqlState: '0A000', message: expect.stringMatching(/DateStyle "SQL, DMY" in time zone "Europe\/Paris"/) }),
    )
    expect(TYPE_CODECS.timestamptz.toText('2024-01-05 12:00:00+00', { ...inZone('Europe/Paris'), dateStyle: 'ISO, DMY' })).toBe('2024-01-05 13:00:00+01')
  })

  it.each([
    ['2024-01-05 12:00:00+16', '22009', 'time zone displacement out of range: "2024-01-05 12:00:00+16"'],
    ['2024-01-05 12:00:00+02:60', '22009', 'time zone displacement out of range: "2024-01-05 12:00:00+02:60"'],
    ['2024-01-05 12:00:00+053000', '22009', 'time zone displacement out of range: "2024-01-05 12:00:00+053000"'],
    ['2024-01-05 24:00:01', '22008', 'date/time field value out of range: "2024-01-05 24:00:01"'],
    ['2024-01-05 23:59:60.5', '22008', 'date/time field value out of range: "2024-01-05 23:59:60.5"'],
    ['2024-01-05 12:60:00', '22008', 'date/time field value out of range: "2024-01-05 12:60:00"'],
    ['2024-01-05 25:00:00', '22008', 'date/time field value out of range: "2024-01-05 25:00:00"'],
    ['2024-02-30 00:00:00', '22008', 'date/time field value out of range: "2024-02-30 00:00:00"'],
    ['294277-01-01 00:00:00+00', '22008', 'timestamp out of range: "294277-01-01 00:00:00+00"'],
    ['4714-11-23 23:59:59+00 BC', '22008', 'timestamp out of range: "4714-11-23 23:59:59+00 BC"'],
    ['4714-11-24 00:00:00+01 BC', '22008', 'timestamp out of range: "4714-11-24 00:00:00+01 BC"'],
    ['2024-01-05 12:00:00 CET', '22007', 'invalid input syntax for type timestamp with time zone: "2024-01-05 12:00:00 CET"'],
    ['2024-01-05 12:30.5', '22007', 'invalid input syntax for type timestamp with time zone: "2024-01-05 12:30.5"'],
    ['01/05/2024 12:00', '22007', 'invalid input syntax for type timestamp with time zone: "01/05/2024 12:00"'],
    ['now', '22007', 'invalid input syntax for type timestamp with time zone: "now"'],
    ['2024-01-05 12:00:00 Mars/Olympus', '22007', 'invalid input syntax for type timestamp with time zone: "2024-01-05 12:00:00 Mars/Olympus"'],
  ])('%j is refused with %s', (input, sqlState, message) => {
    expectRefused(() => TYPE_CODECS.timestamptz.canonicalFromText(input, UTC), sqlState, message)
  })

  it('needs the session for input without an offset, and a zone it can read', () => {
    expectRefused(() => TYPE_CODECS.timestamptz.canonicalFromText('2024-01-05 12:00:00'), '22007', /timestamp with time zone/, { hint: /explicit UTC offset/ })
    expect(TYPE_CODECS.timestamptz.canonicalFromText('2024-01-05 12:00:00+01')).toBe('2024-01-05 11:00:00+00')
    const dstRules = inZone('<+02>-02<+03>,M3.5.0,M10.5.0')
    expectRefused(() => TYPE_CODECS.timestamptz.canonicalFromText('2024-01-05 12:00:00', dstRules), '0A000', /time zone "<\+02>-02<\+03>,M3\.5\.0,M10\.5\.0" is not supported/)
    expectRefused(() => TYPE_CODECS.timestamptz.toText('2024-01-05 12:00:00+00', inZone('right/UTC')), '0A000', /not supported/)
  })

  it('refuses binary timestamps outside PostgreSQL range and of the wrong length', () => {
    expectRefused(() => TYPE_CODECS.timestamptz.canonicalFromBinary(bytes('7fffff5bb3b2a000')), '22008', 'timestamp out of range')
    expectRefused(() => TYPE_CODECS.timestamptz.canonicalFromBinary(bytes('fd0f7cc1411f9fff')), '22008', 'timestamp out of range')
    expectRefused(() => TYPE_CODECS.timestamptz.canonicalFromBinary(bytes('00000000000000')), '22P03', /expected 8 bytes, got 7/)
  })

  it('refuses to output a stored value that is not canonical', () => {
    for (const bad of ['2024-01-05 12:00:00', '0000-01-01 00:00:00+00 BC', '2024-01-05 12:00:00+01', '2024-01-05T12:00:00+00', '2024-01-05 12:00:00.1234567+00', '2024-01-05 24:00:00+00', 'Infinity']) {
      expectRefused(() => TYPE_CODECS.timestamptz.toBinary(bad), 'XX001', 'decrypted value is not a canonical timestamp with time zone')
    }
  })
})

describe('boolean', () => {
  const truthy = ['t', 'tr', 'tru', 'true', 'TRUE', 'True', ' yes ', 'y', 'Ye', 'on', 'ON', '1', '\ttrue\n']
  const falsy = ['f', 'fa', 'fal', 'fals', 'false', 'FALSE', 'n', 'no', 'NO', 'of', 'off', 'OfF', '0']

  it.each(truthy)('%j → t', (input) => {
    expectValue('boolean', input, 't', '01')
  })

  it.each(falsy)('%j → f', (input) => {
    expectValue('boolean', input, 'f', '00')
  })

  it.each(['o', 'O', '', ' ', 'truee', 'yess', 'onn', 'offf', '01', '2', 'tr ue', 'yes please', 'oui'])('%j is refused', (input) => {
    expectRefused(() => TYPE_CODECS.boolean.canonicalFromText(input), '22P02', `invalid input syntax for type boolean: "${input}"`)
  })

  it('reads any non-zero byte as true, as boolrecv does', () => {
    expect(TYPE_CODECS.boolean.canonicalFromBinary(bytes('02'))).toBe('t')
    expect(TYPE_CODECS.boolean.canonicalFromBinary(bytes('ff'))).toBe('t')
    expectRefused(() => TYPE_CODECS.boolean.canonicalFromBinary(bytes('0001')), '22P03', /boolean: expected 1 bytes, got 2/)
    expectRefused(() => TYPE_CODECS.boolean.toBinary('true'), 'XX001', 'decrypted value is not a canonical boolean')
  })
})

describe('uuid', () => {
  it.each([
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
    'a0eebc999c0b4ef8bb6d6bb9bd380a11',
    '{A0EEBC999C0B4EF8BB6D6BB9BD380A11}',
    'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11',
    'a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11',
  ])('%j → a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', (input) => {
    expectValue('uuid', input, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc999c0b4ef8bb6d6bb9bd380a11')
  })

  it.each([
    ' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ',
    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g',
    'a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11',
    '-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    'a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11',
    'a0eebc999c0b4ef8bb6d6bb9bd380a11-',
    '',
  ])('%j is refused', (input) => {
    expectRefused(() => TYPE_CODECS.uuid.canonicalFromText(input), '22P02', `invalid input syntax for type uuid: "${input}"`)
  })

  it('reads 16 bytes and nothing else', () => {
    expect(TYPE_CODECS.uuid.canonicalFromBinary(bytes('00000000000000000000000000000000'))).toBe('00000000-0000-0000-0000-000000000000')
    expectRefused(() => TYPE_CODECS.uuid.canonicalFromBinary(bytes('a0eebc999c0b4ef8bb6d6bb9bd380a')), '22P03', /uuid: expected 16 bytes, got 15/)
    expectRefused(() => TYPE_CODECS.uuid.toText('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', UTC), 'XX001', 'decrypted value is not a canonical uuid')
  })
})

describe('jsonb', () => {
  it.each([
    ['{"b":1,"a":[1,2.50]}', '{"a": [1, 2.50], "b": 1}', '01 7b2261223a205b312c20322e35305d2c202262223a20317d'],
    ['"\\u00e9"', '"é"', '01 22c3a922'],
    ['null', 'null', '01 6e756c6c'],
    ['[]', '[]', '01 5b5d'],
  ])('%j → %s', (input, canonical, binary) => {
    expectValue('jsonb', input, canonical, binary)
  })

  it.each([
    // Keys: shorter (in UTF-8 bytes) first, then bytewise; the last duplicate wins.
    ['{"aa":1,"b":2,"a":3}', '{"a": 3, "b": 2, "aa": 1}'],
    ['{"a":1,"b":2,"a":3}', '{"a": 3, "b": 2}'],
    ['{"a":{"b":1,"b":{"c":2}}}', '{"a": {"b": {"c": 2}}}'],
    ['{"z":{"y":[{"b":1,"a":2}],"x":{}}}', '{"z": {"x": {}, "y": [{"a": 2, "b": 1}]}}'],
    ['{"é":1,"z":2,"ab":3}', '{"z": 2, "ab": 3, "é": 1}'],
    ['{"\\u00e9": 1, "e": 2}', '{"e": 2, "é": 1}'],
    // U+FFFF sorts before U+10000 in UTF-8 though not in UTF-16.
    ['{"\u{10000}":1,"\uffffa":2}', '{"\uffffa": 2, "\u{10000}": 1}'],
    // Numbers in numeric's canonical form, as typed.
    ['[1e3, -0, 0.0, 1E-2, 100e-2, -0.0, 1.50e1]', '[1000, 0, 0.0, 0.01, 1.00, 0.0, 15.0]'],
    // Strings: escapes resolved, then only quotes, backslashes and control characters escaped.
    ['"\\u001f\\/\\"\\\\\\b\\f\\n\\r\\t"', '"\\u001f/\\"\\\\\\b\\f\\n\\r\\t"'],
    ['"\\ud83d\\ude00"', '"😀"'],
    ['"\u007f"', '"\u007f"'],
    [' \n{ "a" : [ ] } \t', '{"a": []}'],
    ['  "x"  ', '"x"'],
    ['true', 'true'],
    ['-0.5e-1', '-0.05'],
  ])('%j → %s', (input, canonical) => {
    expect(TYPE_CODECS.jsonb.canonicalFromText(input)).toBe(canonical)
    expect(TYPE_CODECS.jsonb.toBinary(canonical)).toEqual(Buffer.concat([Buffer.from([1]), Buffer.from(canonical, 'utf8')]))
  })

  it.each([
    ['{', 'The input string ended unexpectedly.'],
    ['', 'The input string ended unexpectedly.'],
    ['[1,]', 'Expected JSON value, but found "]".'],
    ['[1 2]', 'Expected "," or "]", but found "2".'],
    ['{"a" 1}', 'Expected ":", but found "1".'],
    ['{"a":1,}', 'Expected string, but found "}".'],
    ['{1:2}', 'Expected string or "}", but found "1".'],
    ['tru', 'Token "tru" is invalid.'],
    ['True', 'Token "True" is invalid.'],
    ['01', 'Token "01" is invalid.'],
    ['1.5x', 'Token "1.5x" is invalid.'],
    ['{"a":1}x', 'Token "x" is invalid.'],
    ['"\\ud83d"', 'Unicode low surrogate must follow a high surrogate.'],
    ['"\\ude00"', 'Unicode low surrogate must follow a high surrogate.'],
    ['"\\ud83d\\ud83d"', 'Unicode high surrogate must not follow a high surrogate.'],
    ['"\\ud83d\\u0041"', 'Unicode low surrogate must follow a high surrogate.'],
    ['"\\q"', 'Escape sequence "\\q" is invalid.'],
    ['"\\u12"', '"\\u" must be followed by four hexadecimal digits.'],
    ['"a\nb"', 'Character with value 0x0a must be escaped.'],
  ])('%j is refused: %s', (input, detail) => {
    expectRefused(() => TYPE_CODECS.jsonb.canonicalFromText(input), '22P02', 'invalid input syntax for type json', { detail })
  })

  it('refuses \\u0000, numbers numeric cannot hold and absurd nesting', () => {
    expectRefused(() => TYPE_CODECS.jsonb.canonicalFromText('"a\\u0000"'), '22P05', 'unsupported Unicode escape sequence', { detail: '\\u0000 cannot be converted to text.' })
    expectRefused(() => TYPE_CODECS.jsonb.canonicalFromText('[1e131072]'), '22003', 'value overflows numeric format')
    expect(TYPE_CODECS.jsonb.canonicalFromText(`${'['.repeat(2000)}${']'.repeat(2000)}`)).toBe(`${'['.repeat(2000)}${']'.repeat(2000)}`)
    expectRefused(() => TYPE_CODECS.jsonb.canonicalFromText(`${'['.repeat(2001)}${']'.repeat(2001)}`), '54001', 'stack depth limit exceeded')
  })

  it('reads binary version 1 only, as UTF-8', () => {
    expect(TYPE_CODECS.jsonb.canonicalFromBinary(bytes('01 7b2262223a312c2261223a327d'))).toBe('{"a": 2, "b": 1}')
    expectRefused(() => TYPE_CODECS.jsonb.canonicalFromBinary(bytes('02 7b7d')), '22P03', 'unsupported jsonb version number 2')
    expectRefused(() => TYPE_CODECS.jsonb.canonicalFromBinary(Buffer.alloc(0)), '22P03', /jsonb: missing version byte/)
    expectRefused(() => TYPE_CODECS.jsonb.canonicalFromBinary(bytes('01 22ff22')), '22021', 'invalid byte sequence for encoding "UTF8": 0xff')
  })
})
