/**
 * The check of COPY TO output pgveil does not decrypt: envelopes from elsewhere are
 * refused, ordinary bytes pass (proxy/copy-guard.ts).
 */
import { describe, expect, it } from 'vitest'
import { CopyOutGuard } from '../../proxy/copy-guard.js'

const envelope = Buffer.concat([Buffer.from([0x70, 0x76, 0x01, 0x00, 0, 0, 0, 1]), Buffer.alloc(40, 7)])

/** One binary COPY tuple of `fields` (null: SQL NULL), built by hand. */
function tuple(fields: (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0, fields.length])]
  for (const field of fields) {
    const length = Buffer.alloc(4)
    length.writeInt32BE(field === null ? -1 : field.length)
    parts.push(length, ...(field === null ? [] : [field]))
  }
  return Buffer.concat(parts)
}

const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)])
const trailer = Buffer.from([0xff, 0xff])

describe('the check of COPY TO output pgveil does not decrypt', () => {
  it('refuses an envelope in text and CSV rows, wherever it is, and passes other bytea', () => {
    const text = new CopyOutGuard(false)
    expect(() => text.check(Buffer.from('1\t\\\\x0102ff\tplain\n'))).not.toThrow()
    expect(() => text.check(Buffer.from(`7\t\\\\x${envelope.toString('hex')}\n`))).toThrow(expect.objectContaining({ sqlState: 'PV001', severity: 'FATAL' }))
    expect(() => new CopyOutGuard(false).check(Buffer.from(`"a,b",\\x${envelope.toString('hex')}\n`))).toThrow(/encrypted by pgveil/)
  })

  it('reads binary rows field by field: an envelope at a field start is refused, the same bytes inside a field pass', () => {
    const guard = new CopyOutGuard(true)
    expect(() => guard.check(Buffer.concat([header, tuple([Buffer.from('x'), null, Buffer.concat([Buffer.from([1]), envelope])])]))).not.toThrow()
    expect(() => guard.check(tuple([Buffer.from([0x70, 0x76])]))).not.toThrow()
    expect(() => guard.check(tuple([Buffer.from('id'), envelope]))).toThrow(expect.objectContaining({ sqlState: 'PV001' }))
    expect(() => guard.check(trailer)).not.toThrow()
    // The header with a row carrying an envelope, in one message.
    expect(() => new CopyOutGuard(true).check(Buffer.concat([header, tuple([envelope])]))).toThrow(/encrypted by pgveil/)
  })

  it('refuses binary output whose rows do not end with their messages (it could not be checked)', () => {
    const row = tuple([Buffer.from('abc')])
    expect(() => new CopyOutGuard(true).check(Buffer.concat([header, row.subarray(0, row.length - 1)]))).toThrow(/cannot check this binary COPY/)
  })
})
