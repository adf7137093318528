/**
 * Helpers of the reliable-lane process tests (chaos.test.ts): a restartable
 * child process speaking JSON lines on stdout, free ports, a seeded PRNG and
 * the analysis of the "application" files the fixtures append to.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'

export interface ChildStats {
  at: number
  rss: number
  lastSeq: number
  outbox: number
  received: number
  connected: boolean
}

/**
 * One fixture process that may be SIGKILLed and started again with the same
 * config. Keeps the latest stats line of the CURRENT incarnation, the maximum
 * RSS over all of them, every non-stats line, and the stderr tail.
 */
export class Restartable {
  readonly name: string
  readonly #file: string
  readonly #args: () => string[]
  child: ChildProcess | undefined
  stats: ChildStats | undefined
  maxRss = 0
  starts = 0
  readonly notes: Array<Record<string, unknown>> = []
  stderr = ''
  /** Set when the child exited without us killing it. */
  unexpectedExit: string | undefined
  #killing = false
  #waiters: Array<{ check: (m: Record<string, unknown>) => boolean, resolve: (m: Record<string, unknown>) => void }> = []

  constructor (name: string, file: string, args: () => string[]) {
    this.name = name
    this.#file = file
    this.#args = args
  }

  start (): void {
    this.stats = undefined
    this.#killing = false
    this.starts++
    const child = spawn(process.execPath, [this.#file, ...this.#args()], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.stderr = (this.stderr + d).slice(-4000) })
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
      let m: Record<string, unknown>
      try { m = JSON.parse(line) as Record<string, unknown> } catch { this.notes.push({ type: 'garbage', line }); return }
      if (child !== this.child) return
      if (m.type === 'stats') {
        this.stats = m as unknown as ChildStats
        if (this.stats.rss > this.maxRss) this.maxRss = this.stats.rss
      } else {
        this.notes.push(m)
      }
      this.#waiters = this.#waiters.filter(w => { if (!w.check(m)) return true; w.resolve(m); return false })
    })
    child.on('exit', (code, signal) => {
      if (!this.#killing && child === this.child) this.unexpectedExit = `${this.name} exited on its own: code ${String(code)}, signal ${String(signal)}; stderr: ${this.stderr}`
    })
  }

  /** Resolves with the first line (from now on) that `check` accepts. */
  waitFor (check: (m: Record<string, unknown>) => boolean, ms = 30_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no matching line within ${ms} ms; stderr: ${this.stderr}`)), ms)
      this.#waiters.push({ check, resolve: m => { clearTimeout(timer); resolve(m) } })
    })
  }

  signal (sig: NodeJS.Signals): void { this.child?.kill(sig) }

  /** SIGKILL and wait until the process is gone. */
  async kill (sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
    this.#killing = true
    const gone = new Promise(resolve => c.once('exit', resolve))
    c.kill(sig)
    await gone
  }
}

/** A free port on 127.0.0.1 for `udp` (QUIC) or `tcp` (ws), found by binding port 0. */
export async function freePort (kind: 'udp' | 'tcp'): Promise<number> {
  if (kind === 'udp') {
    const s = createSocket('udp4')
    await new Promise<void>((resolve, reject) => { s.once('error', reject); s.bind(0, '127.0.0.1', () => resolve()) })
    const port = s.address().port
    await new Promise<void>(resolve => s.close(() => resolve()))
    return port
  }
  const srv = createServer()
  await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', () => resolve()) })
  const port = (srv.address() as { port: number }).port
  await new Promise<void>(resolve => srv.close(() => resolve()))
  return port
}

/** mulberry32: a small seeded PRNG so a failing chaos schedule can be replayed. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export interface DeliveryReport {
  lines: number
  distinct: number
  missing: number[]
  /** Deliveries beyond the first of an id. */
  duplicates: number
  /** First occurrences that came after a later message of the same resource. */
  orderViolations: number
  /** First occurrences out of global send order (not required; reported). */
  globalOrderViolations: number
}

/** Read an application file of "i r n" lines and check it against ids 0..total-1. */
export function analyze (file: string, total: number): DeliveryReport {
  const text = readFileSync(file, 'utf8')
  const seen = new Uint32Array(total)
  const lastN = new Map<number, number>()
  let lines = 0
  let duplicates = 0
  let orderViolations = 0
  let globalOrderViolations = 0
  let lastFirst = -1
  for (const line of text.split('\n')) {
    if (line === '') continue
    lines++
    const [i, r, n] = line.split(' ').map(Number) as [number, number, number]
    if (!(i >= 0 && i < total)) throw new Error(`${file}: id out of range: ${line}`)
    if ((seen[i] = (seen[i] ?? 0) + 1) > 1) { duplicates++; continue }
    if ((lastN.get(r) ?? -1) >= n) orderViolations++
    lastN.set(r, n)
    if (i < lastFirst) globalOrderViolations++
    lastFirst = i
  }
  const missing: number[] = []
  for (let i = 0; i < total; i++) if (seen[i] === 0) missing.push(i)
  return { lines, distinct: total - missing.length, missing, duplicates, orderViolations, globalOrderViolations }
}
