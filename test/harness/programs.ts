/**
 * Runs client programs (psql, pgbench) without blocking the event loop: the pgveil
 * under test usually lives in the test's own process.
 */
import { spawn } from 'node:child_process'

export interface ProgramResult {
  status: number | null
  stdout: string
  stderr: string
}

export function runProgram(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<ProgramResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, env })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.once('error', reject)
    child.once('close', (status) => resolve({ status, stdout, stderr }))
  })
}
