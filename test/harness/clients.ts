import pg from 'pg'

/** A connected node-postgres client whose asynchronous errors (a FATAL at shutdown, say) are collected, not thrown. */
export async function connectCollectingErrors(config: pg.ClientConfig): Promise<{ client: pg.Client; errors: (Error & { code?: string })[] }> {
  const client = new pg.Client(config)
  const errors: (Error & { code?: string })[] = []
  client.on('error', (error) => errors.push(error))
  await client.connect()
  return { client, errors }
}
