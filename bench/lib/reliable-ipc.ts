/**
 * Plumbing of bench/reliable.ts, the lossy-link reliable scenarios and their
 * child processes (the request/reply channel itself is ./child-ipc.ts): the
 * 256-byte payload that carries its own send time, a cross-process clock,
 * the paced producer loop, the receiver's arrival record and percentiles.
 */
import { readFileSync } from 'node:fs'

/**
 * Wall-clock ms with sub-ms resolution, comparable between processes on one
 * machine (timeOrigin is each process's start on the same system clock).
 */
export function now (): number {
  return performance.timeOrigin + performance.now()
}

export const PAYLOAD_BYTES = 256

/** A PAYLOAD_BYTES message: uint32 index, float64 send time, then filler. */
export function makePayload (i: number, t = now()): Buffer {
  const b = Buffer.alloc(PAYLOAD_BYTES, 0x61)
  b.writeUInt32BE(i, 0)
  b.writeDoubleBE(t, 4)
  return b
}

export function readPayload (b: Uint8Array): { i: number, t: number } {
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  return { i: v.readUInt32BE(0), t: v.readDoubleBE(4) }
}

/** CPU µs (user + system, all threads) of any process, from /proc (Linux; NaN elsewhere). */
export function procCpuUs (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * (1e6 / 100) // USER_HZ = 100
  } catch {
    return NaN
  }
}

export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[i] as number
}

/**
 * Producer loop shared by the hub and the MQTT publisher: `n` sends with at
 * most `window` unacknowledged (durable on the hub / PUBACKed by the broker),
 * optionally paced at `rate` msg/s. Returns the wall time of the first send
 * and of the last acknowledgement.
 */
export async function produce (n: number, window: number, rate: number | undefined, send: (i: number) => Promise<unknown>): Promise<{ firstAt: number, lastAckAt: number }> {
  const inflight = new Set<Promise<unknown>>()
  const firstAt = now()
  let failure: unknown
  for (let i = 0; i < n; i++) {
    if (rate !== undefined) {
      const due = firstAt + (i * 1000) / rate
      const wait = due - now()
      if (wait > 1) await new Promise(resolve => setTimeout(resolve, wait))
    }
    const p: Promise<unknown> = send(i).then(() => { inflight.delete(p) }, err => { failure ??= err; inflight.delete(p) })
    inflight.add(p)
    if (inflight.size >= window) await Promise.race(inflight)
    if (failure !== undefined) throw failure
  }
  await Promise.all(inflight)
  if (failure !== undefined) throw failure
  return { firstAt, lastAckAt: now() }
}

/** Receiver-side record of one run: arrival count, first/last arrival, latency samples. */
export class Arrivals {
  count = 0
  distinct = 0
  firstAt = 0
  lastAt = 0
  #lat: Float64Array
  #seen: Uint8Array
  #target = Infinity
  #done: (() => void) | undefined
  /** Payload index of this run's first message (producers number messages across runs). */
  #base = 0

  constructor (capacity: number) {
    this.#lat = new Float64Array(capacity)
    this.#seen = new Uint8Array(capacity)
  }

  reset (capacity: number, base = 0): void {
    this.#base = base
    this.count = 0
    this.distinct = 0
    this.firstAt = 0
    this.lastAt = 0
    this.#lat = new Float64Array(capacity)
    this.#seen = new Uint8Array(capacity)
  }

  record (payload: Uint8Array): void {
    const t = now()
    const { i: index, t: sent } = readPayload(payload)
    const i = index - this.#base
    if (i < 0 || i >= this.#seen.length) return // a straggler of an earlier run
    if (this.count === 0) this.firstAt = t
    this.lastAt = t
    this.count++
    if (this.#seen[i] === 0) {
      this.#seen[i] = 1
      this.#lat[this.distinct++] = t - sent
    }
    if (this.distinct >= this.#target) { this.#target = Infinity; this.#done?.() }
  }

  /** Resolves when `n` distinct messages arrived (rejects after timeoutMs). */
  wait (n: number, timeoutMs: number): Promise<void> {
    if (this.distinct >= n) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.#target = Infinity; reject(new Error(`only ${this.distinct}/${n} arrived within ${timeoutMs} ms`)) }, timeoutMs)
      this.#target = n
      this.#done = () => { clearTimeout(timer); resolve() }
    })
  }

  summary (): { count: number, distinct: number, firstAt: number, lastAt: number, p50: number, p99: number } {
    const lat = this.#lat.slice(0, this.distinct).sort()
    return { count: this.count, distinct: this.distinct, firstAt: this.firstAt, lastAt: this.lastAt, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) }
  }
}

/**
 * The commands every receiving child answers the same way, for its
 * `default:` branch: `reset {capacity, base}` (next run: payload indexes
 * base..base+capacity-1) → {}, and `wait {n, timeoutMs}` → the arrivals
 * summary plus `extra` (e.g. startAt/connectedAt). Anything else is an
 * unknown command.
 */
export async function answerArrivals (arrivals: Arrivals, req: { cmd: string } & Record<string, unknown>, extra: () => Record<string, unknown>): Promise<unknown> {
  switch (req.cmd) {
    case 'reset':
      arrivals.reset(req.capacity as number, req.base as number)
      return {}
    case 'wait':
      await arrivals.wait(req.n as number, req.timeoutMs as number)
      return { ...arrivals.summary(), ...extra() }
    default:
      throw new Error(`unknown command ${req.cmd}`)
  }
}
