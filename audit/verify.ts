/**
 * `pgveil audit verify`: checks the chain of one or more audit log files (in
 * the order given) and reports the first bad line: edited (MAC mismatch),
 * deleted or reordered (a sequence gap, a broken MAC chain, a chain with no
 * start), truncated (a cut line, or a chain that never closes).
 */
import { chainKeys, MAX_EPOCH, nextSeed, splitMac, VERIFIED_FORMATS, type ChainKeys } from './chain.js'

export interface VerifyProblem {
  readonly file: string
  /** 1-based line number (0: the file as a whole). */
  readonly line: number
  readonly reason: string
}

export interface VerifyResult {
  readonly ok: boolean
  /** Lines whose MAC was checked and found right. */
  readonly lines: number
  readonly chains: number
  readonly problem: VerifyProblem | null
  /** Not failures: chains that ended without a closing line before a new start-up (pgveil was killed). */
  readonly warnings: readonly string[]
}

export interface VerifyOptions {
  /** The last chain may still be open (a log pgveil is writing now). Its tail cannot then be proven complete. */
  readonly allowOpen?: boolean
}

interface OpenChain {
  id: string
  file: string
  startLine: number
  keys: ChainKeys
  /** The previous line's MAC (null before the first line). */
  previousMac: Buffer | null
  seq: number
  closed: boolean
}

export interface AuditFile {
  readonly name: string
  readonly text: string
}

/** Derives chain seeds incrementally: epochs grow within one process's log. */
class SeedCache {
  private epoch = 0
  private seed: Buffer
  constructor(private readonly chainKey: Buffer) {
    this.seed = Buffer.from(chainKey)
  }
  at(epoch: number): Buffer {
    if (epoch < this.epoch) {
      this.epoch = 0
      this.seed = Buffer.from(this.chainKey)
    }
    while (this.epoch < epoch) {
      this.seed = nextSeed(this.seed)
      this.epoch++
    }
    return this.seed
  }
}

export function verifyAuditLog(files: readonly AuditFile[], chainKey: Buffer, options: VerifyOptions = {}): VerifyResult {
  const seeds = new SeedCache(chainKey)
  const warnings: string[] = []
  let current: OpenChain | null = null
  let lines = 0
  let chains = 0
  const fail = (file: string, line: number, reason: string): VerifyResult => ({ ok: false, lines, chains, problem: { file, line, reason }, warnings })

  for (const { name, text } of files) {
    if (text.length > 0 && !text.endsWith('\n')) {
      const count = text.split('\n').length
      return fail(name, count, 'the last line is cut short (the file was truncated mid-line)')
    }
    const rows = text.length === 0 ? [] : text.slice(0, -1).split('\n')
    for (let index = 0; index < rows.length; index++) {
      const lineNo = index + 1
      const raw = rows[index]!
      const split = splitMac(raw)
      if (split === null) return fail(name, lineNo, 'no MAC at the end of the line (edited, truncated, or not a pgveil audit line)')
      let fields: { event?: unknown; chain?: unknown; seq?: unknown; epoch?: unknown; reason?: unknown; version?: unknown; lines?: unknown; previous?: unknown }
      try {
        fields = JSON.parse(split.body) as typeof fields
      } catch {
        return fail(name, lineNo, 'not valid JSON (edited)')
      }
      if (typeof fields.chain !== 'string' || typeof fields.seq !== 'number') return fail(name, lineNo, 'no chain id or sequence number (edited)')

      if (fields.event === 'chain_start') {
        if (typeof fields.version !== 'number' || !VERIFIED_FORMATS.includes(fields.version)) {
          return fail(name, lineNo, `chain format version ${String(fields.version)} is not one this pgveil knows (${VERIFIED_FORMATS.join(', ')})`)
        }
        if (fields.seq !== 0) return fail(name, lineNo, 'a chain start with a sequence number other than 0 (edited)')
        if (typeof fields.epoch !== 'number' || !Number.isInteger(fields.epoch) || fields.epoch < 0 || fields.epoch > MAX_EPOCH) return fail(name, lineNo, 'a chain start without a valid epoch (edited)')
        const open: OpenChain | null = current
        if (open !== null && !open.closed) {
          if (fields.reason === 'startup') {
            warnings.push(`${open.file}:${open.startLine}: chain ${open.id} has no closing line before the next start-up at ${name}:${lineNo} (pgveil stopped without closing it; lines at its end could be missing)`)
          } else {
            return fail(name, lineNo, `a new chain starts (${String(fields.reason)}) but chain ${open.id} (from ${open.file}:${open.startLine}) never closed: lines before this one were deleted`)
          }
        }
        const previous = fields.previous as { chain?: unknown; lines?: unknown; mac?: unknown } | null | undefined
        if (open !== null && previous != null && previous.chain === open.id && (previous.lines !== open.seq || previous.mac !== (open.previousMac?.toString('hex') ?? ''))) {
          return fail(name, lineNo, `chain ${open.id} ended differently from what this chain start records (lines at its end were deleted or edited)`)
        }
        current = { id: fields.chain, file: name, startLine: lineNo, keys: chainKeys(fields.version, seeds.at(fields.epoch), fields.chain), previousMac: null, seq: 0, closed: false }
        chains++
      } else {
        if (current === null || current.closed) return fail(name, lineNo, 'a line outside any chain: its chain start was deleted, or lines were reordered')
        if (fields.chain !== current.id) return fail(name, lineNo, `a line of chain ${fields.chain} inside chain ${current.id} (reordered, or its chain start was deleted)`)
        if (fields.seq !== current.seq) {
          return fail(name, lineNo, fields.seq > current.seq ? `sequence ${fields.seq} where ${current.seq} was expected: ${fields.seq - current.seq} line(s) deleted before it` : `sequence ${fields.seq} where ${current.seq} was expected: lines reordered or repeated`)
        }
      }
      const chain: OpenChain = current
      const mac = chain.keys.nextMac(Buffer.from(split.body), chain.previousMac)
      if (mac.toString('hex') !== split.mac) return fail(name, lineNo, 'MAC mismatch: the line was edited (or a line before it was replaced)')
      chain.previousMac = mac
      chain.seq++
      lines++
      if (fields.event === 'chain_end') {
        if (fields.lines !== chain.seq - 1) return fail(name, lineNo, 'a chain end whose line count does not match the chain (edited)')
        chain.closed = true
      }
    }
  }
  const last = files[files.length - 1]?.name ?? ''
  if (current !== null && !current.closed && options.allowOpen !== true) {
    return fail(last, 0, `chain ${current.id} (from ${current.file}:${current.startLine}) has no closing line: the log was cut after its last line (or pgveil is still writing it: use --open)`)
  }
  if (chains === 0) return fail(last, 0, 'no audit chain found (an empty or foreign file)')
  return { ok: true, lines, chains, problem: null, warnings }
}
