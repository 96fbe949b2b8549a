import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { serialize } from 'pg-protocol'
import { MAX_STARTUP_PACKET_LENGTH, MessageFramer } from '../../protocol/framer.js'
import { expectProtocolError } from './wire-bytes.js'

const SSL_REQUEST_CODE = 80877103

function newFramer(options: { startup?: boolean; maxMessageSize?: number } = {}): MessageFramer {
  return new MessageFramer({ startup: options.startup ?? true, maxMessageSize: options.maxMessageSize ?? 1 << 24, peer: 'client' })
}

/** Switches to regular mode after the StartupMessage, as a session does; SSLRequest keeps startup mode. */
function sessionHandler(framer: MessageFramer, frames: Buffer[]): (frame: Buffer) => void {
  return (frame) => {
    frames.push(frame)
    if (framer.inStartupMode && frame.readUInt32BE(4) !== SSL_REQUEST_CODE) framer.setStartupMode(false)
  }
}

function feed(chunks: Buffer[]): Buffer[] {
  const framer = newFramer()
  const frames: Buffer[] = []
  const handler = sessionHandler(framer, frames)
  for (const chunk of chunks) framer.push(chunk, handler)
  expect(framer.bufferedBytes).toBe(0)
  return frames
}

/** Index of the first frame that differs, or -1; cheaper than toEqual on 70 KiB frames thousands of times. */
function firstDifference(actual: Buffer[], expected: Buffer[]): number {
  const length = Math.max(actual.length, expected.length)
  for (let i = 0; i < length; i++) {
    const a = actual[i]
    const b = expected[i]
    if (a === undefined || b === undefined || !a.equals(b)) return i
  }
  return -1
}


function typedFrame(code: number, body: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + body.length)
  frame[0] = code
  frame.writeUInt32BE(4 + body.length, 1)
  frame.set(body, 5)
  return frame
}

const large = Buffer.alloc(70_000)
for (let i = 0; i < large.length; i++) large[i] = (i * 31) & 0xff

const messages: Buffer[] = [
  serialize.requestSsl(),
  serialize.startup({ user: 'alice', database: 'app' }),
  serialize.query('select 1'),
  serialize.parse({ name: 's1', text: 'select $1::int4', types: [23] }),
  serialize.bind({ statement: 's1', values: ['42'] }),
  serialize.describe({ type: 'P' }),
  serialize.execute(),
  serialize.sync(),
  serialize.flush(),
  serialize.copyData(large),
  serialize.copyDone(),
  serialize.sync(),
  serialize.end(),
]
const stream = Buffer.concat(messages)

describe('MessageFramer splits a stream into the same frames however it is chunked', () => {
  it('the fixture has a zero-body message and one larger than 64 KiB', () => {
    expect(messages.some((m) => m.length === 5)).toBe(true)
    expect(messages.some((m) => m.length > 64 * 1024)).toBe(true)
  })

  it('(a) whole, with frames as views of the chunk', () => {
    const frames = feed([stream])
    expect(firstDifference(frames, messages)).toBe(-1)
    let offset = 0
    for (const frame of frames) {
      expect(frame.buffer).toBe(stream.buffer)
      expect(frame.byteOffset).toBe(stream.byteOffset + offset)
      offset += frame.length
    }
  })

  it('(b) split at every byte position into two chunks', () => {
    const failures: number[] = []
    for (let cut = 0; cut <= stream.length; cut++) {
      const frames = feed([stream.subarray(0, cut), stream.subarray(cut)])
      if (firstDifference(frames, messages) !== -1) failures.push(cut)
    }
    expect(failures).toEqual([])
  })

  it('(c) one byte at a time', () => {
    const chunks: Buffer[] = []
    for (let i = 0; i < stream.length; i++) chunks.push(stream.subarray(i, i + 1))
    expect(firstDifference(feed(chunks), messages)).toBe(-1)
  })

  it('(d) arbitrary chunkings', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat({ max: stream.length }), { maxLength: 40 }), (cuts) => {
        const points = [0, ...cuts.sort((a, b) => a - b), stream.length]
        const chunks = points.slice(1).map((end, i) => stream.subarray(points[i]!, end))
        expect(firstDifference(feed(chunks), messages)).toBe(-1)
      }),
      { numRuns: 300 },
    )
  })

  it('(d) arbitrary messages, chunkings and handler stops', () => {
    const body = fc.oneof({ weight: 4, arbitrary: fc.uint8Array({ maxLength: 300 }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 4000, maxLength: 20_000 }) })
    const scenario = fc
      .array(fc.tuple(fc.integer({ min: 0x20, max: 0x7e }), body), { minLength: 1, maxLength: 25 })
      .map((list) => [serialize.startup({ user: 'u' }), ...list.map(([code, b]) => typedFrame(code, b))])
      .chain((frames) => {
        const total = frames.reduce((n, f) => n + f.length, 0)
        return fc.tuple(
          fc.constant(frames),
          fc.uniqueArray(fc.nat({ max: total }), { maxLength: 30 }),
          fc.array(fc.boolean(), { minLength: frames.length, maxLength: frames.length }),
        )
      })
    fc.assert(
      fc.property(scenario, ([expected, cuts, stops]) => {
        const whole = Buffer.concat(expected)
        const points = [0, ...cuts.sort((a, b) => a - b), whole.length]
        const framer = newFramer()
        const frames: Buffer[] = []
        const handler = (frame: Buffer): boolean => {
          frames.push(frame)
          if (framer.inStartupMode) framer.setStartupMode(false)
          return !stops[frames.length - 1]
        }
        for (let i = 1; i < points.length; i++) {
          framer.push(whole.subarray(points[i - 1]!, points[i]!), handler)
          while (framer.stopped) framer.resume(handler)
        }
        expect(firstDifference(frames, expected)).toBe(-1)
        expect(framer.bufferedBytes).toBe(0)
      }),
      { numRuns: 300 },
    )
  })
})

describe('MessageFramer length checks', () => {
  it('refuses a regular message length below 4, whole or split in the header', () => {
    expectProtocolError(() => newFramer({ startup: false }).push(Buffer.from([0x51, 0, 0, 0, 3]), () => {}), /invalid message length 3 from client/)
    const framer = newFramer({ startup: false })
    for (const byte of [0x51, 0, 0, 0]) framer.push(Buffer.from([byte]), () => {})
    expectProtocolError(() => framer.push(Buffer.from([2]), () => {}), /invalid message length 2 from client/)
  })

  it('refuses a message larger than maxMessageSize before its body arrives', () => {
    const atLimit = typedFrame(0x64, Buffer.alloc(95))
    expect(atLimit.length).toBe(100)
    const frames: Buffer[] = []
    newFramer({ startup: false, maxMessageSize: 100 }).push(atLimit, (f) => {
      frames.push(f)
    })
    expect(frames).toEqual([atLimit])
    const overLimit = typedFrame(0x64, Buffer.alloc(96))
    expectProtocolError(
      () => newFramer({ startup: false, maxMessageSize: 100 }).push(overLimit, () => {}),
      /message of 101 bytes from client exceeds the limit of 100 bytes/,
    )
    const hugeHeaderOnly = Buffer.from([0x64, 0x3f, 0xff, 0xff, 0xff])
    expectProtocolError(() => newFramer({ startup: false, maxMessageSize: 1 << 20 }).push(hugeHeaderOnly, () => {}), /exceeds the limit of 1048576 bytes/)
  })

  it('refuses startup packets longer than 10000 or shorter than 8 bytes', () => {
    const packet = (length: number): Buffer => {
      const p = Buffer.alloc(length)
      p.writeUInt32BE(length, 0)
      p.writeUInt32BE(196608, 4)
      return p
    }
    const frames: Buffer[] = []
    newFramer().push(packet(MAX_STARTUP_PACKET_LENGTH), (f) => {
      frames.push(f)
    })
    expect(frames.map((f) => f.length)).toEqual([10_000])
    expectProtocolError(() => newFramer().push(packet(10_001), () => {}), /invalid startup packet length 10001 from client \(allowed 8 to 10000\)/)
    expectProtocolError(() => newFramer().push(Buffer.from([0, 0, 0, 7, 0, 0, 0]), () => {}), /invalid startup packet length 7/)
    const split = newFramer()
    split.push(Buffer.from([0, 0]), () => {})
    expectProtocolError(() => split.push(Buffer.from([0, 4]), () => {}), /invalid startup packet length 4/)
  })
})

describe('MessageFramer stop and resume', () => {
  const sync = serialize.sync()
  const query = serialize.query('select 1')
  const flush = serialize.flush()

  function regularFramer(): MessageFramer {
    return newFramer({ startup: false })
  }

  it('a handler returning false stops mid-chunk; resume delivers the rest', () => {
    const framer = regularFramer()
    const frames: Buffer[] = []
    expect(framer.push(Buffer.concat([sync, query, flush]), (f) => frames.push(f) > 1)).toBe(false)
    expect(frames).toEqual([sync])
    expect(framer.stopped).toBe(true)
    expect(framer.bufferedBytes).toBe(query.length + flush.length)
    expect(framer.resume((f) => void frames.push(f))).toBe(true)
    expect(frames).toEqual([sync, query, flush])
    expect(framer.stopped).toBe(false)
    expect(framer.bufferedBytes).toBe(0)
  })

  it('chunks that arrive while stopped are held until resume, including a frame split across them', () => {
    const whole = Buffer.concat([sync, query, flush])
    const firstEnd = sync.length + 3
    const framer = regularFramer()
    const seen: Buffer[] = []
    expect(framer.push(whole.subarray(0, firstEnd), (f) => (seen.push(f), false))).toBe(false)
    expect(framer.push(whole.subarray(firstEnd, firstEnd + 4), () => {
      throw new Error('delivered while stopped')
    })).toBe(false)
    expect(framer.push(whole.subarray(firstEnd + 4), () => {
      throw new Error('delivered while stopped')
    })).toBe(false)
    expect(framer.bufferedBytes).toBe(query.length + flush.length)
    expect(framer.resume((f) => void seen.push(f))).toBe(true)
    expect(seen).toEqual([sync, query, flush])
  })

  it('a stop on a frame assembled across chunks holds the rest of the completing chunk', () => {
    const framer = regularFramer()
    const seen: Buffer[] = []
    const whole = Buffer.concat([query, sync, flush])
    expect(framer.push(whole.subarray(0, 4), () => true)).toBe(true)
    expect(framer.push(whole.subarray(4), (f) => (seen.push(f), false))).toBe(false)
    expect(seen).toEqual([query])
    expect(framer.stopped).toBe(true)
    expect(framer.resume((f) => (seen.push(f), false))).toBe(false)
    expect(framer.resume((f) => (seen.push(f), false))).toBe(false)
    expect(seen).toEqual([query, sync, flush])
  })

  it('stopping after every frame delivers one frame per resume', () => {
    const framer = regularFramer()
    const seen: Buffer[] = []
    const stopEach = (f: Buffer): boolean => (seen.push(f), false)
    framer.push(Buffer.concat([sync, query, flush, sync]), stopEach)
    let resumes = 0
    while (framer.stopped) {
      framer.resume(stopEach)
      resumes++
    }
    // The stop on the last frame holds too: four stops, four resumes.
    expect(resumes).toBe(4)
    expect(seen).toEqual([sync, query, flush, sync])
  })

  it('chunks that arrive after a stop on the last frame of a chunk are held until resume', () => {
    const framer = regularFramer()
    const seen: Buffer[] = []
    expect(framer.push(sync, (f) => (seen.push(f), false))).toBe(false)
    expect(framer.stopped).toBe(true)
    expect(framer.push(query, (f) => void seen.push(f))).toBe(false)
    expect(seen).toEqual([sync])
    framer.resume((f) => void seen.push(f))
    expect(seen).toEqual([sync, query])
  })
})

describe('MessageFramer mode switches', () => {
  const ssl = serialize.requestSsl()
  const startup = serialize.startup({ user: 'alice' })
  const query = serialize.query('select 1')

  it('switches from startup to regular mode in the middle of a chunk', () => {
    const chunk = Buffer.concat([ssl, startup, query])
    const framer = newFramer()
    const frames: Buffer[] = []
    framer.push(chunk, sessionHandler(framer, frames))
    expect(frames).toEqual([ssl, startup, query])
    expect(framer.inStartupMode).toBe(false)
  })

  it('without the switch the typed message is misread as a startup packet', () => {
    const framer = newFramer()
    expectProtocolError(() => framer.push(Buffer.concat([startup, query]), () => {}), /invalid startup packet length \d+ from client/)
  })

  it('switches from regular back to startup mode in the middle of a chunk', () => {
    const framer = newFramer({ startup: false })
    const frames: Buffer[] = []
    framer.push(Buffer.concat([query, startup]), (f) => {
      frames.push(f)
      framer.setStartupMode(true)
    })
    expect(frames).toEqual([query, startup])
  })

  it('a mode switch while stopped applies to the held bytes', () => {
    const framer = newFramer()
    const frames: Buffer[] = []
    expect(framer.push(Buffer.concat([ssl, startup, query]), (f) => (frames.push(f), false))).toBe(false)
    expect(framer.resume((f) => (frames.push(f), false))).toBe(false)
    framer.setStartupMode(false)
    expect(framer.resume((f) => void frames.push(f))).toBe(true)
    expect(frames).toEqual([ssl, startup, query])
  })

  it('a frame split across chunks is assembled into storage that does not alias the chunks', () => {
    const framer = newFramer({ startup: false })
    const frames: Buffer[] = []
    const first = Buffer.from(query.subarray(0, 7))
    const second = Buffer.from(query.subarray(7))
    framer.push(first, (f) => void frames.push(f))
    framer.push(second, (f) => void frames.push(f))
    first.fill(0)
    second.fill(0)
    expect(frames).toEqual([query])
  })

  it('reset drops buffered bytes', () => {
    const framer = newFramer({ startup: false })
    framer.push(query.subarray(0, 7), () => {})
    expect(framer.bufferedBytes).toBe(7)
    framer.reset()
    expect(framer.bufferedBytes).toBe(0)
    const frames: Buffer[] = []
    framer.push(query, (f) => void frames.push(f))
    expect(frames).toEqual([query])
  })
})
