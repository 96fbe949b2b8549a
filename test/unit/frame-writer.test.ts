/**
 * FrameWriter: how the frames of one reply reach the socket. Unchanged frames of one
 * read buffer leave as that buffer; a short reply in pieces is joined into one write;
 * a long one is written piece by piece, corked.
 */
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { FrameWriter } from '../../proxy/frame-writer.js'

/** A socket stand-in that records each write (and each writev, as one entry of several buffers). */
function recordingSocket(): { socket: Writable; writes: Buffer[][] } {
  const writes: Buffer[][] = []
  const socket = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writes.push([chunk])
      callback()
    },
    writev(chunks, callback) {
      writes.push(chunks.map((c) => c.chunk as Buffer))
      callback()
    },
  })
  return { socket, writes }
}

describe('FrameWriter', () => {
  it('writes consecutive ranges of one read buffer as that very buffer', () => {
    const { socket, writes } = recordingSocket()
    const writer = new FrameWriter(socket)
    const chunk = Buffer.from('aaaabbbbcccc')
    writer.pushRange(chunk, 0, 4)
    writer.pushRange(chunk, 4, 8)
    writer.pushRange(chunk, 8, 12)
    expect(writer.flush()).toBe(true)
    expect(writes).toHaveLength(1)
    expect(writes[0]![0]).toBe(chunk)
  })

  it('joins a short reply made of pieces of several buffers into one write, bytes in order', () => {
    const { socket, writes } = recordingSocket()
    const writer = new FrameWriter(socket)
    const chunk = Buffer.from('1111222233334444')
    const rewritten = Buffer.from('RRRRRR')
    writer.pushRange(chunk, 0, 4)
    writer.push(rewritten)
    writer.pushRange(chunk, 8, 16)
    writer.flush()
    expect(writes).toEqual([[Buffer.from('1111RRRRRR33334444')]])
  })

  it('writes a long reply in pieces, corked, without copying them', () => {
    const { socket, writes } = recordingSocket()
    const writer = new FrameWriter(socket)
    const big = Buffer.alloc(8192, 0x61)
    const small = Buffer.from('tail')
    writer.push(big)
    writer.push(small)
    writer.flush()
    expect(writes).toHaveLength(1)
    expect(writes[0]).toHaveLength(2)
    expect(writes[0]![0]).toBe(big)
    expect(writes[0]![1]).toBe(small)
  })
})
