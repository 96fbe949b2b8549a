/**
 * The startup phase at byte level: SSLRequest and GSSENCRequest answers, data smuggled
 * after an SSLRequest, oversized startup packets, cancel requests for unknown keys.
 */
import net from 'node:net'
import { serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { RawClient } from '../harness/raw-client.js'

const server = getTestPostgres()
let database: string
let plain: TestProxy
let withTls: TestProxy | null = null

// Built by hand: an independent encoding of the untyped startup-phase packets.
const GSSENC_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])

beforeAll(async () => {
  database = await server.createDatabase('startup')
  const upstreamUrl = `postgres://${server.superuser}@127.0.0.1:${server.port}/${database}?sslmode=disable`
  plain = await startTestProxy({ upstreamUrl })
  if (server.configurable) withTls = await startTestProxy({ upstreamUrl, tls: { cert: server.tls!.proxyCertFile, key: server.tls!.proxyKeyFile, require: false } })
})
afterAll(async () => {
  await plain?.close()
  await withTls?.close()
})

/** Connects, writes `bytes`, and resolves with everything received until the proxy closes or `idleMs` passes. */
function exchange(port: number, bytes: Buffer, idleMs = 1_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(bytes))
    const chunks: Buffer[] = []
    let timer = setTimeout(() => finish(false), idleMs)
    const finish = (closed: boolean) => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ data: Buffer.concat(chunks), closed })
    }
    socket.on('data', (chunk) => {
      chunks.push(chunk)
      clearTimeout(timer)
      timer = setTimeout(() => finish(false), idleMs)
    })
    socket.on('error', () => {})
    socket.on('close', () => finish(true))
  })
}

describe('startup negotiation', () => {
  it('answers GSSENCRequest and, without listener TLS, SSLRequest with N, then serves the session', async () => {
    for (const request of [GSSENC_REQUEST, SSL_REQUEST]) {
      const client = await RawClient.connect(plain.port)
      const answer = await new Promise<Buffer>((resolve) => {
        client.socket.once('data', resolve)
        client.send(request)
      })
      expect(answer).toEqual(Buffer.from('N'))
    }
    // The same connection continues in plaintext after an N.
    const socket = net.connect({ port: plain.port, host: '127.0.0.1' })
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(GSSENC_REQUEST)
    const first = await new Promise<Buffer>((resolve) => socket.once('data', resolve))
    expect(first).toEqual(Buffer.from('N'))
    socket.write(serialize.startup({ user: server.superuser, database }))
    const ready = await new Promise<Buffer>((resolve) => {
      let all = Buffer.alloc(0)
      socket.on('data', (chunk) => {
        all = Buffer.concat([all, chunk])
        if (all.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49]))) resolve(all)
      })
    })
    expect(ready[0]).toBe(0x52) // AuthenticationOk first
    socket.destroy()
  })

  it.runIf(server.configurable)('refuses bytes sent after an SSLRequest before the TLS handshake (08P01)', async () => {
    const { data, closed } = await exchange(withTls!.port, Buffer.concat([SSL_REQUEST, serialize.startup({ user: server.superuser, database })]))
    expect(data[0]).toBe(0x45) // ErrorResponse in plaintext, no 'S'
    expect(data.toString('latin1')).toContain('08P01')
    expect(data.toString('latin1')).toContain('received unencrypted data after SSL request')
    expect(closed).toBe(true)
  })

  it('refuses a startup packet over 10,000 bytes with 08P01', async () => {
    const huge = serialize.startup({ user: server.superuser, database, options: 'x'.repeat(10_000) })
    const { data, closed } = await exchange(plain.port, huge)
    expect(data[0]).toBe(0x45)
    expect(data.toString('latin1')).toContain('08P01')
    expect(data.toString('latin1')).toContain('invalid startup packet length')
    expect(closed).toBe(true)
  })

  it('closes a CancelRequest for an unknown key without an answer', async () => {
    const { data, closed } = await exchange(plain.port, serialize.cancel(12345, 67890))
    expect(data).toHaveLength(0)
    expect(closed).toBe(true)
  })

  it('refuses a startup packet without a user, like PostgreSQL', async () => {
    const packet = Buffer.alloc(4 + 4 + 'database'.length + 1 + database.length + 1 + 1)
    packet.writeUInt32BE(packet.length, 0)
    packet.writeUInt32BE(196608, 4)
    let offset = 8
    offset += packet.write('database\0', offset)
    offset += packet.write(`${database}\0`, offset)
    packet[offset] = 0
    const { data, closed } = await exchange(plain.port, packet)
    expect(data.toString('latin1')).toContain('no PostgreSQL user name specified in startup packet')
    expect(closed).toBe(true)
  })
})
