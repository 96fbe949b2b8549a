/**
 * The row check of COPY … TO STDOUT output that pgveil does not decrypt: a COPY
 * whose query the analyzer did not see a protected column in (a function, a view the
 * catalog does not know yet) may still carry ciphertexts, which must not reach the
 * client as if they were its values (DESIGN decision 7), as the row check of result
 * rows makes sure for SELECT (proxy/row-decryptor.ts). COPY output has no column
 * types, so every field is checked: in text and CSV format for the bytea hex text of
 * an envelope's first bytes (`\x707601`, anywhere: fields are not split here), in
 * binary format for those bytes at the start of a field.
 */
import { PGVEIL_REFUSED } from '../policy/sql-plan.js'
import { WireError } from '../protocol/errors.js'

/** An envelope's magic and format version, as bytea hex text, and as bytes. */
const ENVELOPE_TEXT = Buffer.from('\\x707601')
const ENVELOPE_BYTES = Buffer.from([0x70, 0x76, 0x01])
/** `PGCOPY\n\377\r\n\0`: the binary format's signature, followed by flags and the header extension's length (int32 each). */
const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')

export class CopyOutGuard {
  readonly #binary: boolean
  /** The binary header comes before the first row. */
  #headerSeen = false

  constructor(binary: boolean) {
    this.#binary = binary
  }

  /** Throws a FATAL PV001 when the CopyData payload `data` carries a pgveil envelope. */
  check(data: Buffer): void {
    if (this.#binary ? this.#binaryRowHoldsEnvelope(data) : data.indexOf(ENVELOPE_TEXT) !== -1) {
      throw new WireError(PGVEIL_REFUSED, 'the COPY output holds values encrypted by pgveil that do not come straight from a protected column (a view pgveil does not know yet, a function or an expression), so pgveil cannot decrypt them', {
        severity: 'FATAL',
        hint: 'select the protected columns from their table, or from a view pgveil reads through, in COPY (SELECT …) TO STDOUT',
      })
    }
  }

  /** One row of binary COPY output (PostgreSQL sends each in a CopyData of its own; the header with the first). */
  #binaryRowHoldsEnvelope(data: Buffer): boolean {
    let at = 0
    if (!this.#headerSeen) {
      this.#headerSeen = true
      if (data.length >= BINARY_SIGNATURE.length + 8 && data.compare(BINARY_SIGNATURE, 0, BINARY_SIGNATURE.length, 0, BINARY_SIGNATURE.length) === 0) {
        at = BINARY_SIGNATURE.length + 8 + data.readInt32BE(BINARY_SIGNATURE.length + 4)
      }
    }
    if (at === data.length) return false
    if (at + 2 > data.length) return malformed()
    const fields = data.readInt16BE(at)
    at += 2
    // -1: the trailer.
    if (fields < 0) return false
    for (let i = 0; i < fields; i++) {
      if (at + 4 > data.length) return malformed()
      const length = data.readInt32BE(at)
      at += 4
      if (length < 0) continue
      if (at + length > data.length) return malformed()
      if (length >= ENVELOPE_BYTES.length && data.compare(ENVELOPE_BYTES, 0, ENVELOPE_BYTES.length, at, at + ENVELOPE_BYTES.length) === 0) return true
      at += length
    }
    return false
  }
}

function malformed(): never {
  throw new WireError(PGVEIL_REFUSED, 'pgveil cannot check this binary COPY output for encrypted values: a row does not end where its CopyData message does', { severity: 'FATAL' })
}
