import { describe, expect, it } from 'vitest'
import type { CopySpec } from '../../policy/sql-plan.js'
import { CopyRowTransformer } from '../../proxy/copy-crypto.js'

const TEXT: CopySpec = { direction: 'in', schema: 'public', table: 't', columns: null, format: 'text', delimiter: '\t', nullString: '\\N', header: false, quote: '"', escape: '"' }
const CSV: CopySpec = { ...TEXT, format: 'csv', delimiter: ',', nullString: '' }

/** Field 1 upper-cased: a stand-in for encryption that shows which bytes were a field. */
const upper = () => new CopyRowTransformer(TEXT, new Map([[1, (value: string) => value.toUpperCase()]]))

function feed(transformer: CopyRowTransformer, chunks: Buffer[]): string {
  const out = chunks.map((chunk) => transformer.push(chunk))
  out.push(transformer.end())
  return Buffer.concat(out).toString('utf8')
}

function split(data: Buffer, size: number): Buffer[] {
  const chunks: Buffer[] = []
  for (let i = 0; i < data.length; i += size) chunks.push(data.subarray(i, i + size))
  return chunks
}

describe('CopyRowTransformer (COPY FROM STDIN)', () => {
  const input = Buffer.from('1\tfirst ünï\tx\n2\t\\N\ty\n3\ttab\\there\tz\n4\tlast\tw')
  const expected = '1\tFIRST ÜNÏ\tx\n2\t\\N\ty\n3\tTAB\\tHERE\tz\n4\tLAST\tw'

  it('gives the same rows whatever the chunking, down to one byte per chunk', () => {
    expect(feed(upper(), [input])).toBe(expected)
    for (const size of [1, 2, 3, 5, 7, 16]) expect(feed(upper(), split(input, size))).toBe(expected)
  })

  it('holds a long row sent in many messages until its newline, then emits it once', () => {
    const value = 'v'.repeat(200_000)
    const transformer = upper()
    const chunks = split(Buffer.from(`1\t${value}\tx\n2\tb\tc\n`), 1000)
    const outputs = chunks.map((chunk) => transformer.push(chunk))
    // Nothing leaves before the chunk that carries the first row's newline.
    const firstOut = outputs.findIndex((out) => out.length > 0)
    expect(firstOut).toBe(Math.floor((value.length + 4) / 1000))
    expect(Buffer.concat([...outputs, transformer.end()]).toString()).toBe(`1\t${value.toUpperCase()}\tx\n2\tB\tc\n`)
  })

  it('keeps a CSV quoted field with newlines in it whole across chunks', () => {
    const csv = new CopyRowTransformer(CSV, new Map([[1, (value: string) => value.toUpperCase()]]))
    const data = Buffer.from('1,"multi\nline, quoted",x\n2,plain,y\n')
    expect(feed(csv, split(data, 4))).toBe('1,"MULTI\nLINE, QUOTED",x\n2,PLAIN,y\n')
  })
})
