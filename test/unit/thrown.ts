import { expect } from 'vitest'

/** Runs `fn`, which must throw an instance of `type`; returns the error for further checks. */
export function thrown<T extends Error>(fn: () => unknown, type: abstract new (...args: never[]) => T): T {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(type)
    return error as T
  }
  throw new Error(`expected a ${type.name}, nothing was thrown`)
}
