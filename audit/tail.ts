/**
 * `pgveil audit tail`: filters audit lines and prints them for a person at a
 * terminal (or, with --json, as the lines themselves for other tools).
 */
export interface TailFilter {
  /** Only lines whose identity `sub` is this. */
  readonly sub?: string
  /** Only statements naming this table (`users` matches `public.users`). */
  readonly table?: string
  /** Only lines at or after this time. */
  readonly since?: Date
}

/** `2026-01-31T10:00:00Z`, `2026-01-31`, or a duration back from now: `90s`, `15m`, `2h`, `7d`. */
export function parseSince(text: string, now: Date = new Date()): Date {
  const relative = /^(\d+)(s|m|h|d)$/.exec(text)
  if (relative !== null) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 's' | 'm' | 'h' | 'd']
    return new Date(now.getTime() - Number(relative[1]) * unit)
  }
  const date = new Date(text)
  if (Number.isNaN(date.getTime())) throw new RangeError(`--since "${text}" is not a time (expected an ISO time such as 2026-01-31T10:00:00Z, or a duration such as 15m, 2h, 7d)`)
  return date
}

type Line = Record<string, unknown>

export function matches(line: Line, filter: TailFilter): boolean {
  if (filter.since !== undefined) {
    const time = typeof line.time === 'string' ? Date.parse(line.time) : NaN
    if (!(time >= filter.since.getTime())) return false
  }
  if (filter.sub !== undefined) {
    const identity = line.identity as { sub?: unknown } | null | undefined
    if (identity?.sub !== filter.sub) return false
  }
  if (filter.table !== undefined) {
    const wanted = filter.table.includes('.') ? filter.table : `public.${filter.table}`
    const tables = Array.isArray(line.tables) ? (line.tables as unknown[]) : []
    if (!tables.includes(wanted)) return false
  }
  return true
}

/** One line for a terminal: time, event, who, and for statements what ran and how it ended. */
export function formatLine(line: Line): string {
  const time = typeof line.time === 'string' ? line.time.replace('T', ' ').replace('Z', '') : '?'
  const event = String(line.event ?? '?')
  const identity = line.identity as { sub?: unknown } | null | undefined
  const who = [line.user !== undefined ? `${String(line.user)}@${String(line.database ?? '')}` : '', identity?.sub !== undefined ? `sub=${String(identity.sub)}` : '', line.client !== undefined ? `from ${String(line.client)}` : '']
    .filter((part) => part !== '')
    .join(' ')
  if (event !== 'statement') {
    const extra = Object.entries(line)
      .filter(([key]) => !['time', 'event', 'chain', 'seq', 'mac', 'user', 'database', 'client', 'identity', 'context', 'application_name'].includes(key))
      .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
      .join(' ')
    return `${time}  ${event.padEnd(12)} ${who}${extra === '' ? '' : `  ${extra}`}`
  }
  const outcome = line.outcome as { status?: string; sqlstate?: string; by?: string; message?: string } | undefined
  const result = outcome?.status === 'ok' ? `ok${line.rows === null || line.rows === undefined ? '' : ` ${String(line.rows)} rows`}` : `ERROR ${outcome?.sqlstate ?? '?'} (${outcome?.by ?? '?'}): ${outcome?.message ?? ''}`
  const read = Array.isArray(line.protected_read) && line.protected_read.length > 0 ? ` read=${(line.protected_read as string[]).join(',')}` : ''
  const written = Array.isArray(line.protected_written) && line.protected_written.length > 0 ? ` wrote=${(line.protected_written as string[]).join(',')}` : ''
  return `${time}  ${String(line.kind ?? '?').padEnd(12)} ${who}  ${String(line.statement ?? '')}  → ${result} in ${String(line.duration_ms ?? '?')} ms${read}${written}`
}
