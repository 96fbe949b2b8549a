/**
 * The "bare Node pipe()" baseline of the passthrough budget: a TCP forwarder that
 * understands nothing, run by `bench/run.ts` in its own process (its own event
 * loop, like pgveil). Nagle is off on both sides, as any proxy worth comparing
 * against would do.
 *
 *   node dist/bench/forwarder.js --listen 127.0.0.1:0 --upstream 127.0.0.1:5432
 *
 * Prints `{"port":N}` on stdout once listening.
 */
import net from 'node:net'

function hostPort(value: string | undefined, flag: string): { host: string; port: number } {
  const match = value === undefined ? null : /^(.+):(\d+)$/.exec(value)
  if (match === null || match[1] === undefined || match[2] === undefined) throw new RangeError(`${flag} wants HOST:PORT (got ${String(value)})`)
  const port = Number(match[2])
  if (port < 0 || port > 65535) throw new RangeError(`${flag}: port out of range (${port})`)
  return { host: match[1], port }
}

function argument(flag: string): string | undefined {
  const index = process.argv.indexOf(flag)
  return index === -1 ? undefined : process.argv[index + 1]
}

const listen = hostPort(argument('--listen') ?? '127.0.0.1:0', '--listen')
const upstream = hostPort(argument('--upstream'), '--upstream')

const server = net.createServer({ noDelay: true }, (client) => {
  const target = net.connect({ host: upstream.host, port: upstream.port, noDelay: true })
  const close = (): void => {
    client.destroy()
    target.destroy()
  }
  client.on('error', close).on('close', close)
  target.on('error', close).on('close', close)
  client.pipe(target).pipe(client)
})

server.listen(listen.port, listen.host, () => {
  const address = server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no listening address')
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`)
})

const shutdown = (): void => {
  server.close()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
