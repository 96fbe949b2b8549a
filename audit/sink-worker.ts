/**
 * The audit worker thread: owns the chain keys and the destination, so that
 * sealing (two keyed BLAKE2b computations per line) and file writes never run on the
 * proxy's event loop. Lines arrive through the shared ring (line-ring.ts); messages
 * from AuditSink only wake the worker up (`drain`, up to the ring position it gives), carry a line too big for the
 * ring (`oversized`), or `rotate` / `close` after the lines before a ring position.
 * Replies: `problem`, `dropped`, `closed`, `failed`.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { ChainWriter } from './chain-writer.js'
import { RingReader } from './line-ring.js'
import { RingDrain, type DroppedLines } from './ring-drain.js'

export type ToAuditWorker =
  | { type: 'drain'; head: number }
  | { type: 'oversized'; body: Uint8Array }
  | { type: 'rotate'; at: string; head: number }
  | { type: 'close'; at: string; head: number; dropped: DroppedLines | null }
export type FromAuditWorker =
  | { type: 'problem'; message: string; fields: Record<string, unknown>; lost: number }
  | { type: 'dropped'; lines: number }
  | { type: 'closed' }
  | { type: 'failed'; message: string }

export interface AuditWorkerData {
  readonly to: string
  readonly chainKey: Uint8Array
  readonly startedAt: string
  readonly ring: SharedArrayBuffer
  /** Destination backlog (bytes) above which the worker stops taking lines from the ring. */
  readonly destinationLimit: number
}

const port = parentPort
if (port === null) throw new Error('sink-worker.js runs as a worker thread of AuditSink')
const { to, chainKey, startedAt, ring, destinationLimit } = workerData as AuditWorkerData
const send = (message: FromAuditWorker): void => port.postMessage(message)

let drain: RingDrain
try {
  const key = Buffer.from(chainKey)
  const writer = new ChainWriter({ to, chainKey: key, startedAt }, {
    written: () => drain.written(),
    problem: (message, fields, lost) => send({ type: 'problem', message, fields, lost }),
    dropped: (lines) => send({ type: 'dropped', lines }),
  })
  key.fill(0)
  chainKey.fill(0)
  drain = new RingDrain(new RingReader(ring), writer, destinationLimit)
} catch (error) {
  send({ type: 'failed', message: (error as Error).message })
  process.exit(1)
}

port.on('message', (message: ToAuditWorker) => {
  switch (message.type) {
    case 'drain':
      drain.drain(message.head)
      break
    case 'oversized':
      drain.addOversized(Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength))
      break
    case 'rotate':
      drain.rotate(message.head, message.at)
      break
    case 'close':
      void drain.close(message.head, message.at, message.dropped).then(() => {
        send({ type: 'closed' })
        port.close()
      })
      break
  }
})
