/** Helpers of the codec tests: hand-written wire bytes and ProtocolError expectations. */
import { expect } from 'vitest'
import { ProtocolError } from '../../protocol/errors.js'
import { thrown } from './thrown.js'

/** Hand-written wire bytes: hex strings (spaces ignored) and raw Buffers, concatenated. */
export function wire(...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part.replace(/\s+/g, ''), 'hex') : part)))
}

export function ascii(text: string): Buffer {
  return Buffer.from(text, 'utf8')
}

/** `run` must throw a ProtocolError (SQLSTATE 08P01) whose message matches. */
export function expectProtocolError(run: () => unknown, message: RegExp): void {
  const error = thrown(run, ProtocolError)
  expect(error.message).toMatch(message)
  expect(error.sqlState).toBe('08P01')
}
