/**
 * The session's identity state machine through a fake host: events for the audit
 * log, the read-only view, provisional changes undone by a rollback, and the
 * replies pgveil makes up when PostgreSQL has nothing to do.
 */
import { parse, serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BackendMessage } from 'pg-protocol/dist/messages.js'
import { Readable } from 'node:stream'
import { IdentityTrust, type IdentityConfig } from '../../policy/identity.js'
import { ClientVerdict, SessionIdentity, type IdentityEvent } from '../../proxy/session-identity.js'
import { TestJwksServer } from '../harness/jwks-server.js'

let jwks: TestJwksServer
let trust: IdentityTrust

beforeAll(async () => {
  jwks = await TestJwksServer.start()
  const config: IdentityConfig = {
    require: false,
    issuers: [{ issuer: jwks.issuer, audience: ['api.test'], jwksUri: jwks.jwksUri, algorithms: ['RS256'], secret: null }],
    clockToleranceSeconds: 0,
    maxTokenBytes: 4096,
    onExpiry: 'refuse',
    forwardClaims: false,
    jwksRefreshMs: 300_000,
    jwksCooldownMs: 1_000,
    jwksTimeoutMs: 2_000,
  }
  trust = new IdentityTrust(config, { metrics: { verification() {}, jwksFetch() {} }, log: { warn() {} } })
  await trust.verify(await jwks.token()).catch(() => {})
})
afterAll(async () => {
  trust.stop()
  await jwks.close()
})

/** Backend messages as pg-protocol (an independent parser) reads them. */
async function decode(frames: Buffer[]): Promise<BackendMessage[]> {
  const messages: BackendMessage[] = []
  await parse(Readable.from([Buffer.concat(frames)]), (message) => messages.push(message))
  return messages
}

function setup(): { identity: SessionIdentity; events: IdentityEvent[]; answers: Buffer[][]; upstream: [Buffer[], unknown][]; run: (sql: string) => Promise<BackendMessage[]> } {
  const answers: Buffer[][] = []
  const upstream: [Buffer[], unknown][] = []
  let resumed: (() => void) | null = null
  const identity = new SessionIdentity(
    {
      sendUpstream: (frames, entries) => upstream.push([frames, entries]),
      resumeClient: () => resumed?.(),
      isIdle: () => true,
      answerClient: (frames) => {
        answers.push(frames)
        resumed?.()
      },
      setColumnAccess() {},
      fail: (error) => {
        throw error
      },
    },
    { trust, config: trust.config, access: null },
  )
  const events: IdentityEvent[] = []
  identity.on((event) => events.push(event))
  const run = async (sql: string): Promise<BackendMessage[]> => {
    const frame = serialize.query(sql)
    const done = new Promise<void>((resolve) => (resumed = resolve))
    expect(identity.onClientFrame(frame, 0, frame.length)).toBe(ClientVerdict.Paused)
    await done
    return decode(answers.at(-1)!)
  }
  return { identity, events, answers, upstream, run }
}

describe('SessionIdentity', () => {
  it('answers SET IDENTITY itself when nothing is in flight, and emits identity-set without the token', async () => {
    const { identity, events, upstream, run } = setup()
    const token = await jwks.token({ sub: 'alice' })
    const messages = await run(`SET IDENTITY TO '${token}'`)
    expect(messages.map((m) => m.name)).toEqual(['commandComplete', 'readyForQuery'])
    expect((messages[0] as unknown as { text: string }).text).toBe('SET')
    expect((messages[1] as unknown as { status: string }).status).toBe('I')
    expect(upstream).toEqual([])
    expect(identity.current).toEqual({ iss: jwks.issuer, sub: 'alice', aud: ['api.test'] })
    expect(events).toEqual([{ type: 'identity-set', identity: { iss: jwks.issuer, sub: 'alice', aud: ['api.test'] }, local: false }])
    expect(JSON.stringify(events)).not.toContain(token.split('.')[2])
  })

  it('emits identity-failed for a refused token and leaves the identity as it was', async () => {
    const { identity, events, upstream, run } = setup()
    await run(`SET IDENTITY TO '${await jwks.token({ sub: 'alice' })}'`)
    const frame = serialize.query(`SET IDENTITY TO '${await jwks.token({ aud: 'elsewhere' })}'`)
    expect(identity.onClientFrame(frame, 0, frame.length)).toBe(ClientVerdict.Paused)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(events.at(-1)).toMatchObject({ type: 'identity-failed', outcome: 'audience' })
    // A refusal goes through PostgreSQL, so a transaction aborts as after any error.
    expect(upstream).toHaveLength(1)
    expect(identity.current).toMatchObject({ sub: 'alice' })
  })

  it('SET CONTEXT, SHOW CONTEXT and RESET CONTEXT', async () => {
    const { identity, events, run } = setup()
    await run(`SET CONTEXT TO '{"tenant": 3}'`)
    expect(identity.context).toEqual({ tenant: 3 })
    const shown = await run('SHOW CONTEXT')
    expect(shown.map((m) => m.name)).toEqual(['rowDescription', 'dataRow', 'commandComplete', 'readyForQuery'])
    expect((shown[1] as unknown as { fields: string[] }).fields).toEqual(['{"tenant":3}'])
    await run('RESET CONTEXT')
    expect(identity.context).toBeNull()
    expect(events.map((e) => e.type)).toEqual(['context-set', 'context-cleared'])
  })

  it('undoes a session-level SET made in a transaction that rolls back, and ends SET LOCAL with the transaction', async () => {
    const { identity, events, run } = setup()
    await run(`SET IDENTITY TO '${await jwks.token({ sub: 'kept' })}'`)
    // BEGIN as PostgreSQL answers it: ReadyForQuery 'T'.
    identity.onUpstreamFrame(Buffer.from([0x5a, 0, 0, 0, 5, 0x54]), 0, 6, undefined)
    await run(`SET IDENTITY TO '${await jwks.token({ sub: 'provisional' })}'`)
    await run(`SET LOCAL CONTEXT TO '1'`)
    expect(identity.current).toMatchObject({ sub: 'provisional' })
    expect(identity.context).toBe(1)
    // ROLLBACK: CommandComplete ROLLBACK, then ReadyForQuery 'I'.
    const tag = Buffer.concat([Buffer.from([0x43, 0, 0, 0, 13]), Buffer.from('ROLLBACK\0')])
    identity.onUpstreamFrame(tag, 0, tag.length, undefined)
    identity.onUpstreamFrame(Buffer.from([0x5a, 0, 0, 0, 5, 0x49]), 0, 6, undefined)
    expect(identity.current).toMatchObject({ sub: 'kept' })
    expect(identity.context).toBeNull()
    expect(events.at(-1)).toEqual({ type: 'context-cleared', cause: 'rollback' })
  })
})
