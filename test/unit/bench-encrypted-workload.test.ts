import { describe, expect, it } from 'vitest'
import { ENCRYPTED_WORKLOADS, encryptedWorkloadScript } from '../../bench/encrypted-workload.js'

/** The `random(lo, hi)` range a pgbench script draws `:n` from. */
function emailRange(script: string): [number, number] {
  const match = /\\set n random\((\d+), (\d+)\)/.exec(script)
  if (match === null) throw new Error(`no \\set n in ${script}`)
  return [Number(match[1]), Number(match[2])]
}

describe('encrypted workload scripts compare like with like', () => {
  it('inserts emails that lookups and updates never ask for, so those match one row in either table', () => {
    const rows = 10_000
    const [insertLow, insertHigh] = emailRange(encryptedWorkloadScript('insert', 'ew_plain', rows))
    expect(insertLow).toBeGreaterThan(rows)
    expect(insertHigh).toBeGreaterThan(insertLow)
    for (const workload of ['lookup', 'update'] as const) expect(emailRange(encryptedWorkloadScript(workload, 'ew_encrypted', rows))).toEqual([1, rows])
  })

  it('runs the same statement on both tables, only the table name differing', () => {
    for (const workload of ENCRYPTED_WORKLOADS) {
      expect(encryptedWorkloadScript(workload, 'ew_encrypted', 500)).toBe(encryptedWorkloadScript(workload, 'ew_plain', 500).replaceAll('ew_plain', 'ew_encrypted'))
    }
  })
})
