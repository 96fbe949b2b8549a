/**
 * PostgreSQL as the oracle for `protocol/types.ts`: for hand-picked and generated
 * inputs of every supported type, what the codecs make of a value must be what
 * PostgreSQL makes of it.
 *
 *   (a) text input: `canonicalFromText(s)` equals PostgreSQL's output function applied
 *       to `s::TYPE` (what a client receives in text format; `::text` would differ for
 *       boolean) with
 *       TimeZone UTC, and when PostgreSQL refuses `s` the codec refuses it with the
 *       same SQLSTATE and message;
 *   (b) binary output: `toBinary(canonical)` equals the type's send function applied
 *       to the value (`int4send`, `numeric_send`, …: the function PostgreSQL calls to
 *       write a binary-format result column; node-postgres decodes every DataRow cell
 *       as UTF-8, so raw result bytes are read once, on the wire, to confirm it);
 *       binary input: `canonicalFromBinary(bytes)` equals what PostgreSQL reads from the
 *       same bytes sent as a binary Bind parameter (the type's receive function);
 *   (c) text output: `toText(canonical, session)` equals PostgreSQL's output after
 *       `SET TimeZone` for several zones (DST, half-hour and 45-minute offsets, fixed).
 *
 * Text inputs go to a PL/pgSQL function in batches (one round trip per type and zone),
 * which catches each input's error in a subtransaction. Generated inputs come from
 * fast-check with a seed printed on failure (`PGVEIL_ORACLE_SEED` replays one).
 * `PGVEIL_ORACLE_SCALE` multiplies the number of generated inputs.
 * On PostgreSQL 15 inputs that only 16+ accepts (`_` digit separators, 0x/0o/0b,
 * '+infinity') are left out: the codecs follow 16+ on purpose.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pg from 'pg'
import { serialize } from 'pg-protocol'
import { WireError } from '../../protocol/errors.js'
import { POLICY_TYPES, TYPE_CODECS, policyTypeFromName, type PolicyType, type SessionFormat } from '../../protocol/types.js'
import { getTestPostgres } from '../harness/pg.js'
import { RawClient } from '../harness/raw-client.js'

const SEED = Number(process.env.PGVEIL_ORACLE_SEED ?? Date.now() % 0x7fffffff)
/** Multiplies the number of generated inputs, for a longer hunt (`PGVEIL_ORACLE_SCALE=20`). */
const SCALE = Number(process.env.PGVEIL_ORACLE_SCALE ?? 1)

const ORACLE_FUNCTION = `
CREATE FUNCTION oracle(typ regtype, inputs text[])
RETURNS TABLE (output text, send bytea, state text, message text)
LANGUAGE plpgsql AS $body$
DECLARE
  output_function text := (SELECT typoutput::text FROM pg_type WHERE oid = typ);
  send_function text := (SELECT typsend::text FROM pg_type WHERE oid = typ);
  item text;
BEGIN
  FOREACH item IN ARRAY inputs LOOP
    BEGIN
      EXECUTE format('SELECT %s($1::%s)::text, %s($1::%s)', output_function, typ, send_function, typ) INTO output, send USING item;
      state := NULL;
      message := NULL;
    EXCEPTION WHEN OTHERS THEN
      output := NULL;
      send := NULL;
      GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    END;
    RETURN NEXT;
  END LOOP;
END
$body$`

interface OracleRow {
  output: string | null
  send: Buffer | null
  state: string | null
  message: string | null
}

type Outcome = { ok: true; text: string; binary?: string; canonical?: string } | { ok: false; sqlState: string; message?: string }

let client: pg.Client
let serverVersion = 0
const UTC_SESSION: SessionFormat = { timeZone: 'UTC', dateStyle: 'ISO, MDY', integerDatetimes: true }

async function setSession(timeZone: string, dateStyle = 'ISO, MDY'): Promise<SessionFormat> {
  await client.query(`SET TimeZone = '${timeZone}'`)
  await client.query(`SET DateStyle = '${dateStyle}'`)
  const shown = await client.query<{ TimeZone: string }>('SHOW TimeZone')
  const style = await client.query<{ DateStyle: string }>('SHOW DateStyle')
  return { timeZone: shown.rows[0]!.TimeZone, dateStyle: style.rows[0]!.DateStyle, integerDatetimes: true }
}

function sample<T>(arbitrary: fc.Arbitrary<T>, numRuns: number, salt: number): T[] {
  return fc.sample(arbitrary, { numRuns: Math.ceil(numRuns * SCALE), seed: SEED + salt })
}

/** Inputs PostgreSQL 15 refuses but 16+ accepts (and the codecs follow 16+). */
function onlyPostgres16(type: PolicyType, input: string): boolean {
  switch (type) {
    case 'smallint':
    case 'integer':
    case 'bigint':
      // PostgreSQL 15 also reports overflow before trailing junk in a different order.
      return /\d/.test(input) && !/^[ \t\n\v\f\r]*[+-]?\d+[ \t\n\v\f\r]*$/.test(input)
    case 'numeric':
      return /_|0[xXoObB]|[eE][ \t\n\v\f\r]/.test(input)
    case 'date':
    case 'timestamptz':
      return /\+infinity/i.test(input)
    default:
      return false
  }
}

function ourOutcome(type: PolicyType, input: string, session: SessionFormat, withCanonical: boolean): Outcome {
  const codec = TYPE_CODECS[type]
  try {
    const canonical = codec.canonicalFromText(input, session)
    const outcome: Outcome = { ok: true, text: codec.toText(canonical, session), binary: codec.toBinary(canonical).toString('hex') }
    if (withCanonical) outcome.canonical = canonical
    return outcome
  } catch (error) {
    if (!(error instanceof WireError)) throw error
    return { ok: false, sqlState: error.sqlState, message: error.message }
  }
}

function theirOutcome(row: OracleRow, withCanonical: boolean): Outcome {
  if (row.state !== null) return { ok: false, sqlState: row.state, message: row.message ?? '' }
  const outcome: Outcome = { ok: true, text: row.output!, binary: row.send!.toString('hex') }
  if (withCanonical) outcome.canonical = row.output!
  return outcome
}

/** (a)+(b)+(c) for text inputs in the current session; returns the disagreements. */
async function compareTextInputs(type: PolicyType, inputs: readonly string[], session: SessionFormat): Promise<string[]> {
  const kept = serverVersion >= 160000 ? [...inputs] : inputs.filter((input) => !onlyPostgres16(type, input))
  const { rows } = await client.query<OracleRow>('SELECT * FROM oracle($1::regtype, $2::text[])', [TYPE_CODECS[type].sqlName, kept])
  expect(rows).toHaveLength(kept.length)
  // With TimeZone UTC and DateStyle ISO, PostgreSQL's output is the canonical text itself.
  const withCanonical = session.timeZone === 'UTC' && session.dateStyle.startsWith('ISO')
  const mismatches: string[] = []
  kept.forEach((input, k) => {
    const ours = ourOutcome(type, input, session, withCanonical)
    const theirs = theirOutcome(rows[k]!, withCanonical)
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) {
      mismatches.push(`${type} ${JSON.stringify(input)} in ${session.timeZone}: pgveil ${JSON.stringify(ours)} postgres ${JSON.stringify(theirs)}`)
    }
  })
  return mismatches
}

async function postgresFromBinary(sqlName: string, bytes: Buffer): Promise<Outcome> {
  try {
    // The output function, not a cast to text: boolean's cast says 'true' where boolout says 't'.
    const output = await client.query<{ f: string }>('SELECT typoutput::text AS f FROM pg_type WHERE oid = $1::regtype', [sqlName])
    const result = await client.query<{ v: string }>({ text: `SELECT ${output.rows[0]!.f}($1::${sqlName})::text AS v`, values: [bytes] })
    return { ok: true, text: result.rows[0]!.v }
  } catch (error) {
    const failure = error as pg.DatabaseError
    return { ok: false, sqlState: failure.code ?? '?', message: failure.message }
  }
}

/**
 * canonicalFromBinary against PostgreSQL's receive function. Where PostgreSQL's
 * failure is a protocol-level one (short data: 08P01, trailing bytes: a message naming
 * the Bind parameter), only "both refuse" is compared.
 */
async function compareBinaryInputs(type: PolicyType, samples: readonly Buffer[], exactErrors: (bytes: Buffer) => boolean): Promise<string[]> {
  const codec = TYPE_CODECS[type]
  const mismatches: string[] = []
  for (const bytes of samples) {
    const theirs = await postgresFromBinary(codec.sqlName, bytes)
    let ours: Outcome
    try {
      ours = { ok: true, text: codec.canonicalFromBinary(bytes) }
    } catch (error) {
      if (!(error instanceof WireError)) throw error
      ours = { ok: false, sqlState: error.sqlState, message: error.message }
    }
    if (!ours.ok && !theirs.ok && !exactErrors(bytes)) continue
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) {
      mismatches.push(`${type} 0x${bytes.toString('hex')}: pgveil ${JSON.stringify(ours)} postgres ${JSON.stringify(theirs)}`)
    }
  }
  return mismatches
}

function expectNoMismatches(mismatches: string[]): void {
  expect(mismatches.slice(0, 30), `seed ${SEED} (PGVEIL_ORACLE_SEED), ${mismatches.length} disagreements`).toEqual([])
}

// ---------------------------------------------------------------------------
// Generators

const SPACE = fc.constantFrom('', '', '', '', ' ', '  ', '\t', '\n', ' \r\n')
const SIGN = fc.constantFrom('', '', '', '-', '+')
const digitString = (minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...'0123456789'), minLength, maxLength })
const soup = (alphabet: string, maxLength: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...alphabet), maxLength })
const join = (parts: readonly unknown[]): string => parts.join('')

function integerArbitrary(bits: 16 | 32 | 64): fc.Arbitrary<string> {
  const limit = 1n << BigInt(bits - 1)
  const boundaries = [limit - 1n, limit, limit + 1n, -limit, -limit - 1n, -limit + 1n, 0n, 1n, -1n]
  return fc.oneof(
    fc.bigInt({ min: -limit - 2n, max: limit + 1n }).map(String),
    fc.bigInt({ min: -limit * 1000n, max: limit * 1000n }).map(String),
    fc.constantFrom(...boundaries).map(String),
    fc.tuple(SPACE, SIGN, fc.constantFrom('', '0', '000'), digitString(1, 6), SPACE).map(join),
    fc.tuple(SPACE, SIGN, fc.constantFrom('0x', '0X', '0o', '0b', '0B'), soup('0123456789abcdefABCDEF_', 8), SPACE).map(join),
    fc.tuple(SIGN, digitString(1, 3), fc.constantFrom('_', '__', ''), digitString(0, 3)).map(join),
    fc.tuple(fc.constantFrom(...boundaries).map(String), fc.constantFrom('0', '9', 'x', ' x', '.0', 'e1')).map(join),
    soup(' +-_0123456789xXoObBaAfF.e', 8),
  )
}

const NUMERIC_ARBITRARY: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(
    SPACE,
    SIGN,
    digitString(0, 25),
    fc.option(digitString(0, 25).map((d) => `.${d}`), { nil: '' }),
    fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.integer({ min: 0, max: 60 })).map(join), { nil: '' }),
    SPACE,
  ).map(join),
  fc.tuple(SIGN, digitString(1, 4), fc.constantFrom('_', ''), digitString(1, 4), fc.constantFrom('.', ''), digitString(0, 3), fc.constantFrom('_', ''), digitString(0, 3)).map(join),
  fc.tuple(SPACE, fc.mixedCase(fc.constantFrom('NaN', 'Infinity', 'inf', '-Infinity', '+inf', '-inf', '+NaN', 'infinit', 'Infinityy')), SPACE).map(join),
  fc.tuple(SIGN, fc.constantFrom('0x', '0o', '0b'), soup('0123456789abcdefABCDEF_', 10)).map(join),
  soup('0123456789.eE+-_ xXnNaAiIfF', 10),
)

const pad = (n: number, width: number): string => String(n).padStart(width, '0')

const DATE_ARBITRARY: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(
    SPACE,
    fc.integer({ min: 0, max: 9999 }).map((y) => pad(y, 4)),
    fc.constantFrom('-'),
    fc.integer({ min: 0, max: 13 }),
    fc.boolean(),
    fc.integer({ min: 0, max: 32 }),
    fc.boolean(),
    fc.constantFrom('', '', '', ' BC', ' AD', ' bc'),
    SPACE,
  ).map(([s1, y, dash, m, padMonth, d, padDay, era, s2]) => `${s1}${y}${dash}${padMonth ? pad(m, 2) : m}-${padDay ? pad(d, 2) : d}${era}${s2}`),
  fc.tuple(fc.integer({ min: 1, max: 4800 }), fc.constantFrom('', ' BC')).map(([y, era]) => `${pad(y, 4)}-02-29${era}`),
  fc.tuple(fc.integer({ min: 4700, max: 4714 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 31 })).map(([y, m, d]) => `${y}-${pad(m, 2)}-${pad(d, 2)} BC`),
  fc.tuple(fc.integer({ min: 5874890, max: 5874899 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 31 })).map(([y, m, d]) => `${y}-${pad(m, 2)}-${pad(d, 2)}`),
  fc.tuple(SPACE, fc.mixedCase(fc.constantFrom('infinity', '-infinity', 'epoch', '+infinity'))).map(join),
)

const TIMESTAMP_ZONES = ['', '', '', 'Z', 'z', ' UTC', ' gmt', '+00', ' +02', '+05:30', '-08', '-0330', '+0545', '+14:00', '-11:30:15', ' Europe/Paris', ' America/New_York', ' Asia/Kolkata']

const TIMESTAMP_ARBITRARY: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(
    fc.oneof(fc.integer({ min: 1970, max: 2037 }), fc.integer({ min: 1, max: 9999 })),
    fc.integer({ min: 1, max: 12 }),
    fc.integer({ min: 1, max: 31 }),
    fc.constantFrom(' ', 'T', 't', '  '),
    fc.integer({ min: 0, max: 24 }),
    fc.integer({ min: 0, max: 59 }),
    fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined }),
    fc.option(digitString(1, 9), { nil: undefined }),
    fc.constantFrom(...TIMESTAMP_ZONES),
    fc.constantFrom('', '', '', '', ' BC'),
  ).map(([y, mo, d, sep, h, mi, s, frac, zone, era]) => {
    const time = `${pad(h, 2)}:${pad(mi, 2)}${s === undefined ? '' : `:${pad(s, 2)}${frac === undefined ? '' : `.${frac}`}`}`
    return `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}${sep}${time}${zone}${era}`
  }),
  // Local times around DST transitions (no offset: the session's zone decides).
  fc.tuple(
    fc.integer({ min: 1970, max: 2037 }),
    fc.constantFrom('03', '04', '09', '10', '11'),
    fc.integer({ min: 1, max: 31 }),
    fc.integer({ min: 0, max: 3 }),
    fc.constantFrom(0, 15, 30, 45, 59),
  ).map(([y, mo, d, h, mi]) => `${y}-${mo}-${pad(d, 2)} ${pad(h, 2)}:${pad(mi, 2)}:00`),
  fc.tuple(fc.integer({ min: 1, max: 300000 }), fc.constantFrom('', ' BC'), fc.constantFrom('+00', '-15', '+15:59')).map(([y, era, zone]) => `${pad(y, 4)}-06-15 12:00:00${zone}${era}`),
)

const BOOLEAN_WORDS = ['t', 'tr', 'tru', 'true', 'f', 'fa', 'fal', 'fals', 'false', 'y', 'ye', 'yes', 'n', 'no', 'on', 'of', 'off', 'o', '1', '0', 'truee', 'yess', 'onn', 'offf', '01', '2', '']
const BOOLEAN_ARBITRARY: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(SPACE, fc.mixedCase(fc.constantFrom(...BOOLEAN_WORDS)), SPACE).map(join),
  soup('tTrRuUeEfFaAlLsSyYnNoO01 ', 6),
)

const UUID_ARBITRARY: fc.Arbitrary<string> = fc
  .tuple(
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
    fc.boolean(),
    fc.constantFrom(['', ''], ['', ''], ['{', '}'], ['{', ''], ['', '}'], [' ', '']),
    fc.option(fc.tuple(fc.nat({ max: 40 }), fc.constantFrom('', '-', 'g', 'A', ' ', '--')), { nil: undefined }),
  )
  .map(([bytes, hyphens, upper, [open, close], mutation]) => {
    const hex = Buffer.from(bytes).toString('hex')
    let text = ''
    for (let k = 0; k < 8; k++) text += hex.slice(4 * k, 4 * k + 4) + (hyphens[k] && k < 7 ? '-' : '')
    if (upper) text = text.toUpperCase()
    text = `${open}${text}${close}`
    if (mutation !== undefined) {
      const at = mutation[0] % (text.length + 1)
      text = text.slice(0, at) + mutation[1] + text.slice(at + 1)
    }
    return text
  })

/** A deterministic stream of numbers in [0, 1) (mulberry32). */
function randomStream(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** JSON text for `s` with some characters as \u escapes (astral ones as surrogate pairs). */
function messyJsonString(s: string, next: () => number): string {
  let out = '"'
  for (const ch of s) {
    const code = ch.codePointAt(0)!
    if (next() < 0.2 || code < 0x20) {
      for (let k = 0; k < ch.length; k++) {
        const hex = ch.charCodeAt(k).toString(16).padStart(4, '0')
        out += `\\u${next() < 0.5 ? hex : hex.toUpperCase()}`
      }
    } else if (ch === '"' || ch === '\\') {
      out += `\\${ch}`
    } else if (ch === '/' && next() < 0.5) {
      out += '\\/'
    } else {
      out += ch
    }
  }
  return `${out}"`
}

/** JSON text for `value` with random whitespace, escapes and duplicated keys (an earlier, losing value). */
function messyJson(value: fc.JsonValue, next: () => number): string {
  const space = (): string => ['', '', '', ' ', '\n', '\t', '  ', '\r\n'][Math.floor(next() * 8)]!
  if (value === null || typeof value === 'boolean') return String(value)
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : JSON.stringify(value)
  if (typeof value === 'string') return messyJsonString(value, next)
  if (Array.isArray(value)) return `[${space()}${value.map((item) => messyJson(item, next)).join(`${space()},${space()}`)}${space()}]`
  const members: string[] = []
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue
    if (next() < 0.15) members.push(`${messyJsonString(key, next)}:"overridden"`)
    members.push(`${messyJsonString(key, next)}${space()}:${space()}${messyJson(item, next)}`)
  }
  return `{${space()}${members.join(`,${space()}`)}${space()}}`
}

const JSONB_ARBITRARY: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.jsonValue({ stringUnit: 'binary', maxDepth: 4 }), fc.integer()).map(([value, seed]) => messyJson(value, randomStream(seed))),
  fc.tuple(fc.jsonValue({ stringUnit: 'grapheme', maxDepth: 3 }), fc.integer()).map(([value, seed]) => messyJson(value, randomStream(seed))),
  fc.json({ maxDepth: 3 }),
  soup('{}[]":, 1e-.tfnul\\u0aé', 10),
)

const TEXT_ARBITRARY: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }).filter((s) => !s.includes('\0')),
  fc.string({ unit: 'grapheme', maxLength: 10 }),
)

// ---------------------------------------------------------------------------
// Hand-picked inputs

const INTEGER_INPUTS = [
  '0', '-0', '+0', '  42  ', '\t-17\n', '00012', '-007', '1e3', '1.0', '', ' ', '+', '-', '--1', '+-1', '12abc', 'abc', '1 2', '١٢', '１２', '\u00a012',
  '32767', '32768', '-32768', '-32769', '2147483647', '2147483648', '-2147483648', '-2147483649',
  '9223372036854775807', '9223372036854775808', '-9223372036854775808', '-9223372036854775809', '99999999999999999999999',
  '0x1F', '0X1f', '-0x1F', '0o17', '0O17', '0b101', '0B101', '0x', '0o', '0b', '0x_1F', '0xg', '0o8', '0b2', '1_000', '1_000_000', '1__0', '_1', '1_', '-_1', '0x7FFF', '0x8000', '-0x8000',
  '0x7FFFFFFF', '0x80000000', '-0x80000000', '0x7FFFFFFFFFFFFFFF', '0x8000000000000000', '-0x8000000000000000', `0b${'1'.repeat(31)}`, `0o${'7'.repeat(22)}`,
  '32769x', '2147483649x', '99999999999x',
]

const NUMERIC_INPUTS = [
  '0', '-0', '+0', '0.00', '-0.00', '1.50', '-1.50', '1e3', '1E+3', '1.5e-3', '1.50e1', '.5', '5.', '.', '-.5e1', '1e', '1e+', 'e5', '1.e2', '1 .5', '1..5', '++1', '+-1',
  'NaN', 'nan', 'NAN', '-NaN', '+NaN', ' NaN ', 'Infinity', '-infinity', '+inf', 'INF', '-Inf', 'infinit', 'infinityx', 'in', '  12.5  ', '\t-7\n',
  '1_000.000_1', '1._5', '1_.5', '_1', '1__0', '1e1_0', '1e_1', '0x1F', '-0x1F', '0x', '0b', '0o_7', '0x_F',
  '1e131071', '9e131071', '1e131072', '1e-16383', '1e-16384', '0e-16384', '0e-16383', '0e99999', '1e1073741823', '1e1073741824', '1e-1073741823',
  `0.${'0'.repeat(16383)}`, `0.${'0'.repeat(16384)}`, `1${'0'.repeat(1000)}`, '123456789012345678901234567890.123456789012345678901234567890',
  '0.0001', '0.00001', '10000', '9999.9999', '100000000', '1e4', '12345.678', '-12345.678', '0.1e-5', '00000.00000', '000123.4500',
]

const DATE_INPUTS = [
  '2024-01-05', '2024-1-5', ' 2024-01-05 ', '2024-01-05 AD', '2024-02-29', '2023-02-29', '1900-02-29', '2000-02-29', '1970-01-01',
  '0001-01-01', '0001-01-01 BC', '0001-12-31 bc', '0000-01-01', '0000-01-01 BC', '0004-02-29 BC', '0005-02-29 BC', '4713-01-01 BC', '4714-11-24 BC', '4714-11-23 BC', '4714-12-31 BC', '4715-01-01 BC',
  '5874897-12-31', '5874898-01-01', '999-01-01', '10000-01-01', '99999999999-01-01', '2147483647-01-01', '2147483648-01-01',
  '2024-13-01', '2024-00-10', '2024-01-00', '2024-01-32', '2024-04-31',
  'infinity', '-infinity', '+infinity', 'Infinity', 'EPOCH', ' epoch ', '',
  '2024-01-05BC', '2024-01-05  BC', '2024-01-05\tad', ' -Infinity ', 'infinity BC', '2024-01-05 B C', '02024-01-05', '000002024-1-5',
]

const TIMESTAMP_INPUTS = [
  '2024-01-05 12:00:00', '2024-01-05T12:00:00Z', '2024-01-05t12:00:00z', '2024-01-05 12:00', '2024-01-05', '2024-01-05 12:00:00 UTC', '2024-01-05 12:00:00 gmt', '2024-01-05 12:00:00zulu',
  '2024-01-05 12:00:00.123456789', '2024-01-05 12:00:00.0000005', '2024-01-05 12:00:00.0000015', '2024-01-05 12:00:00.0000025', '2024-01-05 12:00:00.9999995', '2024-01-05 23:59:59.9999995',
  '2024-01-05 12:00:00.1', '2024-01-05 12:00:00.000001', '2024-01-05 12:00:00.',
  '2024-01-05 24:00:00', '2024-01-05 24:00:01', '2024-01-05 23:59:60', '2024-01-05 23:59:60.5', '2024-12-31 23:59:60', '2024-01-05 12:60:00', '2024-01-05 25:00:00', '2024-01-05 12:00:61',
  '2024-01-05 12:00:00+02', '2024-01-05 12:00:00 +02', '2024-01-05 12:00:00+0530', '2024-01-05 12:00:00+530', '2024-01-05 12:00:00-08:00', '2024-01-05 12:00:00-08:00:30',
  '2024-01-05 12:00:00+15:59', '2024-01-05 12:00:00+16', '2024-01-05 12:00:00+053000', '2024-01-05 12:00:00+02:60', '2024-01-05+02', '2024-01-05 +02',
  '2024-01-05 12:00:00 Europe/Paris', '2024-07-05 12:00:00 America/New_York', '2024-03-31 02:30:00 Europe/Paris',
  '2024-03-31 02:30:00', '2024-10-27 02:30:00', '2024-03-10 02:30:00', '2024-11-03 01:30:00', '2024-04-07 02:15:00', '2024-10-06 02:15:00',
  'infinity', '-infinity', '+infinity', 'epoch', ' Epoch ', 'INFINITY',
  '0001-01-01 00:00:00+00 BC', '0001-01-01 00:00:00 BC', '2024-01-05 12:00:00+02 BC', '4714-11-24 00:00:00+00 BC', '4714-11-23 23:59:59+00 BC', '4714-11-24 00:00:00+01 BC',
  '294276-12-31 23:59:59.999999+00', '294277-01-01 00:00:00+00', '294276-12-31 23:59:59.9999995+00', '1800-01-01 00:00:00', '1883-11-18 12:00:00', '2024-02-30 00:00:00', '2024-02-29 00:00:00',
  '0000-01-01 00:00:00', '2024-01-05 12:00:00 BC',
  '2024-01-05Z', '2024-01-05T12:00:00+02:00', '2024-01-05 12:00:00 +02 BC', '2024-01-05BC', '2024-01-05 BC', '2024-01-05 12:00:00 bc', '2024-01-05 12:00:00 ad',
  '2024-01-05 12:00:00Europe/Paris', '2024-01-05 12:00:00 europe/paris', '2024-10-27 02:30:00 Europe/Paris', '2024-03-31 02:30:00 Europe/Paris', '2024-01-05 12:00:00 Etc/GMT+5',
  '2024-01-05 12:00:00 +2', '2024-01-05 12:00:00+2:30', '2024-01-05 12:00:00 -0', '2024-01-05 1:2:3', '2024-01-05 12:00:00.5 +01', '2024-01-05  12:00', '2024-01-05T 12:00', '2024-01-05 T12:00',
  '2024-01-05 12:00:00+02:30:60', '2024-01-05 12:00:00+99999999999', '2024-01-05 12:00:00-00:00:01', '2024-01-05 12:00:00 Z', '2024-01-05 12:00:00 z',
]

const BOOLEAN_INPUTS = [...BOOLEAN_WORDS, ...BOOLEAN_WORDS.map((w) => w.toUpperCase()), ' t ', '\ttrue\n', 'tr ue', 'TrUe', 'oN', 'OFF ', ' o ']

const UUID_INPUTS = [
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 'a0eebc999c0b4ef8bb6d6bb9bd380a11',
  'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11', '{a0eebc999c0b4ef8bb6d6bb9bd380a11}', 'a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11', '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  ' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g', 'a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11', '-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11',
  'a0eebc999c0b4ef8bb6d6bb9bd380a11-', '', '{}',
]

const JSONB_INPUTS = [
  '{"b":1,"a":2}', '{"a":1,"a":2}', '{"a":1,"b":2,"a":3}', '{"aa":1,"b":2,"a":3}', ' [1, 2.50, 1e3, -0, 1E-2, 0.0, -0.0, 1e+2, 100e-2] ', '[1e400]', '[1e131072]', '[123456789012345678901234567890]',
  '"\\u00e9"', '"\\u00E9"', '"\\ud83d\\ude00"', '"\\ud83d"', '"\\ude00"', '"\\u0000"', '"a\\u0000"', '"\\ud83d\\u0041"', '"\\ud83d\\ud83d"', '"\\ud83dx"', '"\\u12"', '"\\u12g4"', '"\\x"', '"\\/\\b\\f\\n\\r\\t\\"\\\\"',
  '"\u001f"', '"\u007f"', '"a\nb"', '"\t"', '"é"', '"😀"', '{"é":1,"z":2,"ab":3}', '{"\\u00e9": 1, "e": 2}', '{"\uffff":1,"\u{10000}":2,"\ue000":3,"\ud7ff":4}', '{"😀":1,"\uffff":2}',
  '{"a":{"c":[{"z":1,"y":[]}],"b":{}}}', '{"":1," ":2}', '[[[[[]]]]]', '[{}, [], "", 0]', 'null', 'true', 'false', '  "x"  ', '\n\r\t 1 \n',
  '', ' ', '{', '}', '[', '[1,]', '[1 2]', '{"a" 1}', '{"a":1,}', '{,}', '{"a"}', '{1:2}', 'tru', 'nul', 'True', 'NULL', 'truex', 'true1', '01', '-', '-a', '1.', '.5', '+1', '1e', '1e+', '1.5x', 'NaN', 'Infinity', '1 2', '{"a":1}x', '[1]]', '"abc', "'a'",
]

// ---------------------------------------------------------------------------

beforeAll(async () => {
  const server = getTestPostgres()
  serverVersion = server.versionNum
  const database = await server.createDatabase('types_oracle')
  client = new pg.Client({ connectionString: server.url(database) })
  await client.connect()
  await client.query(ORACLE_FUNCTION)
  await setSession('UTC')
})

afterAll(async () => {
  await client?.end()
})

describe('type catalog', () => {
  it('OIDs, array OIDs and typlen match pg_type', async () => {
    for (const type of POLICY_TYPES) {
      const codec = TYPE_CODECS[type]
      const { rows } = await client.query<{ oid: number; typarray: number; typlen: number; name: string }>(
        'SELECT oid::int, typarray::int, typlen::int, format_type(oid, NULL) AS name FROM pg_type WHERE oid = $1::regtype',
        [codec.sqlName],
      )
      expect({ type, oid: codec.oid, arrayOid: codec.arrayOid, typlen: codec.typlen, sqlName: codec.sqlName }).toEqual({ type, oid: rows[0]!.oid, arrayOid: rows[0]!.typarray, typlen: rows[0]!.typlen, sqlName: rows[0]!.name })
    }
  })

  it('every name policyTypeFromName accepts names the same type in PostgreSQL', async () => {
    const names = ['text', 'integer', 'int', 'int4', 'bigint', 'int8', 'smallint', 'int2', 'numeric', 'decimal', 'date', 'timestamptz', 'timestamp with time zone', 'boolean', 'bool', 'uuid', 'jsonb', 'INTEGER', 'Timestamp  With Time Zone']
    for (const name of names) {
      const { rows } = await client.query<{ oid: number }>('SELECT $1::regtype::oid::int AS oid', [name])
      const type = policyTypeFromName(name)
      expect(type, name).toBeDefined()
      expect(TYPE_CODECS[type!].oid, name).toBe(rows[0]!.oid)
    }
  })
})

describe('text input, canonical text and binary output (UTC)', () => {
  const cases: [PolicyType, string[]][] = [
    ['smallint', [...INTEGER_INPUTS, ...sample(integerArbitrary(16), 300, 1)]],
    ['integer', [...INTEGER_INPUTS, ...sample(integerArbitrary(32), 300, 2)]],
    ['bigint', [...INTEGER_INPUTS, ...sample(integerArbitrary(64), 300, 3)]],
    ['numeric', [...NUMERIC_INPUTS, ...sample(NUMERIC_ARBITRARY, 500, 4)]],
    ['date', [...DATE_INPUTS, ...sample(DATE_ARBITRARY, 400, 5)]],
    ['timestamptz', [...TIMESTAMP_INPUTS, ...sample(TIMESTAMP_ARBITRARY, 400, 6)]],
    ['boolean', [...BOOLEAN_INPUTS, ...sample(BOOLEAN_ARBITRARY, 200, 7)]],
    ['uuid', [...UUID_INPUTS, ...sample(UUID_ARBITRARY, 300, 8)]],
    ['jsonb', [...JSONB_INPUTS, ...sample(JSONB_ARBITRARY, 400, 9)]],
    ['text', ['', 'plain', ' spaces ', 'é', '😀', '\ufeffbom', 'a\u0001b', ...sample(TEXT_ARBITRARY, 200, 10)]],
  ]
  for (const [type, inputs] of cases) {
    it(`${type}: ${inputs.length} inputs agree with PostgreSQL`, async () => {
      const session = await setSession('UTC')
      expectNoMismatches(await compareTextInputs(type, inputs, session))
    })
  }
})

describe('timestamptz in session time zones', () => {
  const zones = ['Europe/Paris', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kolkata', 'America/St_Johns', 'Pacific/Chatham', 'Asia/Kathmandu', 'Europe/Dublin', '+02', 'Etc/GMT+5', 'UTC0']
  const inputs = [...TIMESTAMP_INPUTS, ...sample(TIMESTAMP_ARBITRARY, 250, 11)]

  it.each(zones)('input without an offset is read in %s, output is printed in it', async (zone) => {
    const session = await setSession(zone)
    expectNoMismatches(await compareTextInputs('timestamptz', inputs, session))
  })

  // (c): canonical values of instants across PostgreSQL's whole range, printed in each zone.
  const instants = [
    ...sample(fc.bigInt({ min: -2208988800000000n, max: 2145916800000000n }), 150, 12), // 1900 .. 2068
    ...sample(fc.bigInt({ min: -211813488000000000n, max: 9223371331199999999n }), 60, 13),
    -211813488000000000n, 9223371331199999999n, 0n, -1n, 1n, 1n << 40n,
  ]
  const canonicals = instants.map((us) => {
    const bytes = Buffer.alloc(8)
    bytes.writeBigInt64BE(us)
    return TYPE_CODECS.timestamptz.canonicalFromBinary(bytes)
  })

  it.each(['UTC', ...zones])('canonical values print as PostgreSQL prints them in %s', async (zone) => {
    const session = await setSession(zone)
    expectNoMismatches(await compareTextInputs('timestamptz', [...canonicals, 'infinity', '-infinity'], session))
  })

  it('dates print the same under another ISO field order', async () => {
    const session = await setSession('Europe/Paris', 'ISO, DMY')
    expectNoMismatches(await compareTextInputs('date', DATE_INPUTS.filter((d) => d !== '+infinity'), session))
    await setSession('UTC')
  })
})

describe('dates and timestamptz under the SQL, Postgres and German DateStyles', () => {
  const STYLES = ['SQL, MDY', 'SQL, DMY', 'Postgres, MDY', 'Postgres, DMY', 'German, DMY']
  /** Canonical (ISO) values, which PostgreSQL reads the same under every DateStyle: across the whole range, BC, leap days, the infinities. */
  const dateCanonicals = [
    ...sample(fc.integer({ min: -2451545, max: 2147483494 - 2451545 - 1 }), 200, 14).map((days) => {
      const bytes = Buffer.alloc(4)
      bytes.writeInt32BE(days)
      return TYPE_CODECS.date.canonicalFromBinary(bytes)
    }),
    '2024-02-29', '0001-01-01', '0001-12-31 BC', '0044-03-15 BC', '4714-11-24 BC', '5874897-12-31', '1999-01-08', 'infinity', '-infinity',
  ]
  const timestampCanonicals = [
    ...sample(fc.bigInt({ min: -211813488000000000n, max: 9223371331199999999n }), 150, 15),
    ...sample(fc.bigInt({ min: -2208988800000000n, max: 2145916800000000n }), 100, 16),
    -211813488000000000n, 9223371331199999999n, 0n, -1n, 500000n, -63113904000000000n,
  ].map((us) => {
    const bytes = Buffer.alloc(8)
    bytes.writeBigInt64BE(us)
    return TYPE_CODECS.timestamptz.canonicalFromBinary(bytes)
  })

  it.each(STYLES)('dates print as PostgreSQL prints them under %s', async (style) => {
    const session = await setSession('UTC', style)
    expectNoMismatches(await compareTextInputs('date', dateCanonicals, session))
  })

  // Zones whose abbreviation is one fixed string: PostgreSQL's names for UTC, Etc/GMT±N, POSIX fixed zones.
  const zones = ['UTC', 'GMT', 'Etc/UCT', 'Etc/GMT+5', 'Etc/GMT-14', '+02', '-3.5', 'UTC0', 'EST5', 'posix/Etc/GMT-3']
  it.each(STYLES.flatMap((style) => zones.map((zone) => [style, zone])))('timestamptz prints as PostgreSQL prints it under %s in %s', async (style, zone) => {
    const session = await setSession(zone, style)
    expectNoMismatches(await compareTextInputs('timestamptz', [...timestampCanonicals, 'infinity', '-infinity'], session))
  })

  it('refuses (0A000) to print timestamptz under another style in a zone whose abbreviations come from tzdata', async () => {
    const session = await setSession('Europe/Paris', 'SQL, DMY')
    const { rows } = await client.query<{ output: string }>("SELECT '2024-07-05 12:00:00+00'::timestamptz::text AS output")
    expect(rows[0]!.output).toBe('05/07/2024 14:00:00 CEST')
    expect(() => TYPE_CODECS.timestamptz.toText('2024-07-05 12:00:00+00', session)).toThrow(expect.objectContaining({ sqlState: '0A000' }))
    await setSession('UTC')
  })
})

describe('binary result columns on the wire', () => {
  const server = getTestPostgres()
  // A protocol-level client authenticates with trust only; an external server may want a password.
  it.skipIf(server.superuserPassword !== null)('carry the bytes toBinary produces', async () => {
    const values: [PolicyType, string][] = [
      ['smallint', '-32768'],
      ['integer', '42'],
      ['bigint', '9223372036854775807'],
      ['numeric', '-12345.678'],
      ['numeric', 'Infinity'],
      ['date', '0001-01-01 BC'],
      ['timestamptz', '2024-01-05 12:00:00.123457+00'],
      ['boolean', 't'],
      ['uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
      ['jsonb', '{"b":1,"a":[1,2.50]}'],
      ['text', 'héllo'],
    ]
    const database = await server.createDatabase('types_wire')
    const raw = await RawClient.startup(server.port, { user: server.superuser, database })
    try {
      const captured: Buffer[] = []
      raw.socket.on('data', (chunk: Buffer) => captured.push(chunk))
      const from = raw.received.length
      const sql = `SELECT ${values.map(([type], k) => `$${k + 1}::${TYPE_CODECS[type].sqlName}`).join(', ')}`
      raw.send(serialize.parse({ text: sql }), serialize.bind({ values: values.map(([, text]) => text), binary: true }), serialize.execute(), serialize.sync())
      await raw.untilReady(from)
      const stream = Buffer.concat(captured)
      let cells: Buffer[] | undefined
      for (let at = 0; at + 5 <= stream.length; at += 1 + stream.readUInt32BE(at + 1)) {
        if (stream[at] !== 0x44) continue
        cells = []
        let offset = at + 7
        for (let k = 0; k < stream.readUInt16BE(at + 5); k++) {
          const length = stream.readInt32BE(offset)
          cells.push(stream.subarray(offset + 4, offset + 4 + length))
          offset += 4 + length
        }
      }
      expect(cells?.map((cell) => cell.toString('hex'))).toEqual(values.map(([type, text]) => TYPE_CODECS[type].toBinary(TYPE_CODECS[type].canonicalFromText(text, UTC_SESSION)).toString('hex')))
    } finally {
      raw.close()
    }
  })
})

describe('deliberate refusals', () => {
  it('refuses with 22007 the date and time forms PostgreSQL reads through DateStyle or the clock', async () => {
    const session = await setSession('UTC')
    const dates = ['01/05/2024', '05.01.2024', 'Jan 5 2024', '5 January 2024', '20240105', '05-01-24', 'today', 'tomorrow', 'yesterday', '2024-01-05 12:00', 'J2451545', '2024-001']
    const timestamps = ['01/05/2024 12:00', 'Jan 5 2024 12:00', '20240105T120000', 'now', 'today', '2024-01-05 12:00:00 CET', '2024-01-05 12:00:00 PST', '2024-01-05 12:00 PM', '2024-01-05 12:30.5', '2024-01-05 12:00.', '2024-01-05 1230']
    const { rows: dateRows } = await client.query<OracleRow>('SELECT * FROM oracle($1::regtype, $2::text[])', ['date', dates])
    const { rows: timestampRows } = await client.query<OracleRow>('SELECT * FROM oracle($1::regtype, $2::text[])', ['timestamptz', timestamps])
    const accepted = (inputs: string[]): Record<string, string | null> => Object.fromEntries(inputs.map((input) => [input, null]))
    expect(Object.fromEntries(dates.map((input, k) => [input, dateRows[k]!.state]))).toEqual(accepted(dates))
    expect(Object.fromEntries(timestamps.map((input, k) => [input, timestampRows[k]!.state]))).toEqual(accepted(timestamps))
    for (const input of dates) expect(ourOutcome('date', input, session, false), input).toMatchObject({ ok: false, sqlState: '22007' })
    for (const input of timestamps) expect(ourOutcome('timestamptz', input, session, false), input).toMatchObject({ ok: false, sqlState: '22007' })
  })
})

describe('binary input agrees with PostgreSQL receive functions', () => {
  const sizedBytes = (length: number, count: number, salt: number): Buffer[] => sample(fc.uint8Array({ minLength: length, maxLength: length }), count, salt).map((b) => Buffer.from(b))
  const wrongLengths = (length: number): Buffer[] => [Buffer.alloc(0), Buffer.alloc(length - 1, 0x11), Buffer.alloc(length + 1, 0x22)]
  const never = (): boolean => false

  it('integers', async () => {
    const mismatches = [
      ...(await compareBinaryInputs('smallint', [...sizedBytes(2, 40, 20), Buffer.from('8000', 'hex'), Buffer.from('7fff', 'hex'), ...wrongLengths(2)], never)),
      ...(await compareBinaryInputs('integer', [...sizedBytes(4, 40, 21), Buffer.from('80000000', 'hex'), Buffer.from('ffffffff', 'hex'), ...wrongLengths(4)], never)),
      ...(await compareBinaryInputs('bigint', [...sizedBytes(8, 40, 22), Buffer.from('8000000000000000', 'hex'), Buffer.from('7fffffffffffffff', 'hex'), ...wrongLengths(8)], never)),
    ]
    expectNoMismatches(mismatches)
  })

  it('numeric', async () => {
    const structured = fc
      .tuple(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 9999, 10000, -1)), { maxLength: 6 }),
        fc.oneof(fc.integer({ min: -8, max: 8 }), fc.constantFrom(-32768, 32767, -4100)),
        fc.constantFrom(0x0000, 0x4000, 0xc000, 0xd000, 0xf000, 0x0000, 0x4000, 0x8000, 0x1234),
        fc.oneof(fc.integer({ min: 0, max: 24 }), fc.constantFrom(0x3fff, 0x4000, 0x20)),
        fc.constantFrom(0, 0, 0, 0, 1, -1),
      )
      .map(([digits, weight, sign, dscale, lengthError]) => {
        const bytes = Buffer.alloc(8 + 2 * digits.length)
        bytes.writeUInt16BE(digits.length + (lengthError === 1 ? 1 : 0), 0)
        bytes.writeInt16BE(weight, 2)
        bytes.writeUInt16BE(sign, 4)
        bytes.writeUInt16BE(dscale, 6)
        digits.forEach((d, k) => bytes.writeInt16BE(d, 8 + 2 * k))
        return lengthError === -1 ? Buffer.concat([bytes, Buffer.from([0])]) : bytes
      })
    const samples = [...sample(structured, 250, 23), Buffer.alloc(0), Buffer.alloc(7)]
    // PostgreSQL names the Bind parameter when bytes are left over or missing.
    const exact = (bytes: Buffer): boolean => bytes.length >= 8 && bytes.length === 8 + 2 * bytes.readUInt16BE(0)
    expectNoMismatches(await compareBinaryInputs('numeric', samples, exact))
  })

  it('date and timestamptz', async () => {
    const dates = [
      ...sample(fc.integer({ min: -0x80000000, max: 0x7fffffff }), 40, 24),
      ...sample(fc.integer({ min: -2451600, max: 3000000 }), 40, 25),
      -0x80000000, 0x7fffffff, -2451545, -2451546, 2147483494 - 2451545 - 1, 2147483494 - 2451545, 0, -1,
    ].map((days) => {
      const bytes = Buffer.alloc(4)
      bytes.writeInt32BE(days)
      return bytes
    })
    const timestamps = [
      ...sample(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), 40, 26),
      ...sample(fc.bigInt({ min: -211813488000000000n - 10n, max: 9223371331200000000n + 10n }), 40, 27),
      -(1n << 63n), (1n << 63n) - 1n, -211813488000000000n, -211813488000000001n, 9223371331199999999n, 9223371331200000000n, -1n, 0n,
    ].map((us) => {
      const bytes = Buffer.alloc(8)
      bytes.writeBigInt64BE(us)
      return bytes
    })
    const exactLength = (length: number) => (bytes: Buffer): boolean => bytes.length === length
    expectNoMismatches([
      ...(await compareBinaryInputs('date', [...dates, ...wrongLengths(4)], exactLength(4))),
      ...(await compareBinaryInputs('timestamptz', [...timestamps, ...wrongLengths(8)], exactLength(8))),
    ])
  })

  it('boolean, uuid, text and jsonb', async () => {
    const texts = [
      ...sample(fc.uint8Array({ maxLength: 10 }), 60, 28).map((b) => Buffer.from(b)),
      ...sample(fc.string({ unit: 'binary', maxLength: 10 }), 30, 29).map((s) => Buffer.from(s, 'utf8')),
      Buffer.from('efbbbf41', 'hex'), Buffer.from('eda080', 'hex'), Buffer.from('f4908080', 'hex'), Buffer.from('c0af', 'hex'), Buffer.from('e282', 'hex'), Buffer.from('41e2', 'hex'),
    ]
    const jsons = [
      ...sample(JSONB_ARBITRARY, 40, 30).map((s) => Buffer.concat([Buffer.from([1]), Buffer.from(s, 'utf8')])),
      Buffer.from([1]), Buffer.from([1, 0x7b, 0x7d]), Buffer.from([1, 0x22, 0xff, 0x22]),
    ]
    expectNoMismatches([
      ...(await compareBinaryInputs('boolean', [...[0, 1, 2, 0xff].map((b) => Buffer.from([b])), ...wrongLengths(1)], never)),
      ...(await compareBinaryInputs('uuid', [...sizedBytes(16, 20, 31), ...wrongLengths(16)], never)),
      ...(await compareBinaryInputs('text', texts, () => true)),
      ...(await compareBinaryInputs('jsonb', [...jsons, Buffer.from([2, 0x31]), Buffer.alloc(0)], (bytes) => bytes[0] === 1)),
    ])
  })
})
