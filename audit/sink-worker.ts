/**
 * The audit worker thread: owns the chain keys and the destination, so that
 * sealing (two keyed BLAKE2b computations per line) and file writes never run on the
 * proxy's event loop. Messages from AuditSink: `lines` (bodies joined by "\n"),
 * `rotate`, `close`; replies: `written`, `problem`, `closed`.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { ChainWriter } from './chain-writer.js'

export type ToAuditWorker = { type: 'lines'; text: string; bytes: number } | { type: 'rotate'; at: string } | { type: 'close'; at: string }
export type FromAuditWorker =
  /** `bytes`: the sum of the `bytes` of the batches written. */
  | { type: 'written'; bytes: number }
  | { type: 'problem'; message: string; fields: Record<string, unknown>; lost: number }
  | { type: 'closed' }
  | { type: 'failed'; message: string }

const port = parentPort
if (port === null) throw new Error('sink-worker.js runs as a worker thread of AuditSink')
const { to, chainKey, startedAt } = workerData as { to: string; chainKey: Uint8Array; startedAt: string }
const send = (message: FromAuditWorker): void => port.postMessage(message)

let writer: ChainWriter
try {
  const key = Buffer.from(chainKey)
  writer = new ChainWriter({ to, chainKey: key, startedAt }, {
    written: (bytes) => send({ type: 'written', bytes }),
    problem: (message, fields, lost) => send({ type: 'problem', message, fields, lost }),
  })
  key.fill(0)
  chainKey.fill(0)
} catch (error) {
  send({ type: 'failed', message: (error as Error).message })
  process.exit(1)
}

port.on('message', (message: ToAuditWorker) => {
  switch (message.type) {
    case 'lines':
      writer.writeBatch(Buffer.from(message.text), message.bytes)
      break
    case 'rotate':
      writer.rotate(message.at)
      break
    case 'close':
      void writer.close(message.at).then(() => {
        send({ type: 'closed' })
        port.close()
      })
      break
  }
})
