/**
 * A protocol-level client for tests that need exact control of what is sent
 * (pipelined batches, garbage, half-sent messages). Messages are built and parsed by
 * pg-protocol, an implementation independent of pgveil's codec.
 */
import net from 'node:net'
import { parse, serialize } from 'pg-protocol'
import type { BackendMessage } from 'pg-protocol/dist/messages.js'

export interface ReceivedMessage extends BackendMessage {
  code?: string
  message?: string
  severity?: string
  processID?: number
  secretKey?: number
  status?: string
  text?: string
  fields?: unknown[]
  fieldCount?: number
}

export class RawClient {
  readonly socket: net.Socket
  readonly received: ReceivedMessage[] = []
  private waiters: (() => void)[] = []
  closed = false
  readonly closedPromise: Promise<void>

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.on('error', () => {})
    this.closedPromise = new Promise((resolve) => socket.once('close', () => {
      this.closed = true
      this.notify()
      resolve()
    }))
    void parse(socket, (message) => {
      this.received.push(message as ReceivedMessage)
      this.notify()
    }).catch(() => {})
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host }, () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }

  /** Connect and complete a trust-authenticated startup. */
  static async startup(port: number, params: { user: string; database: string }): Promise<RawClient> {
    const client = await RawClient.connect(port)
    client.send(serialize.startup({ ...params }))
    await client.waitFor((m) => m.name === 'readyForQuery' || m.name === 'error')
    const failure = client.received.find((m) => m.name === 'error')
    if (failure !== undefined) throw new Error(`startup failed: ${failure.message}`)
    return client
  }

  send(...buffers: Buffer[]): void {
    this.socket.write(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers))
  }

  /** Resolves with the first received message (from `from` on) that matches; rejects on close or timeout. */
  async waitFor(match: (m: ReceivedMessage) => boolean, options: { from?: number; timeoutMs?: number } = {}): Promise<ReceivedMessage> {
    let found: ReceivedMessage | undefined
    await this.until(() => (found = this.received.slice(options.from ?? 0).find(match)) !== undefined, options.timeoutMs)
    return found!
  }

  /** Messages from index `from` up to and including the `count`-th ReadyForQuery after it. */
  async untilReady(from: number, count = 1, timeoutMs?: number): Promise<ReceivedMessage[]> {
    const nthReady = (): number => {
      let ready = 0
      for (let i = from; i < this.received.length; i++) if (this.received[i]!.name === 'readyForQuery' && ++ready === count) return i
      return -1
    }
    await this.until(() => nthReady() >= 0, timeoutMs)
    return this.received.slice(from, nthReady() + 1)
  }

  /** Waits until `done()` holds; rejects when the connection closes first or after the timeout. */
  async until(done: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (done()) return
      if (this.closed) throw new Error(`connection closed; received: ${this.received.map((m) => m.name).join(', ')}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out; received: ${this.received.map((m) => m.name).join(', ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  close(): void {
    this.socket.destroy()
  }

  private notify(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }
}
