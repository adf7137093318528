/**
 * Edge-side load of the lossy-link session scenarios (address change,
 * flapping link, asymmetric link), the same for every system under test —
 * edgefabric's EdgeNode, MQTT.js against mosquitto, the NATS client against
 * nats-server — so only the `send` function differs between them:
 *
 * - RequestLoop: small requests answered by a responder on the cloud side,
 *   open loop at `rate`/s (a request never waits for the previous one, so an
 *   outage shows up as failed requests, not as fewer requests) or closed
 *   loop with one in flight (`rate` undefined: the grid's rr pattern). Each
 *   request has its own deadline; a request that errors or misses it failed.
 * - UploadLoop: bulk messages with at most `window` unacknowledged, the ack
 *   being what each system offers (PUBACK, JetStream PubAck, the hub
 *   application's answer); goodput = bytes acknowledged ÷ time.
 *
 * "Longest gap": the longest time without a successful completion, from the
 * start to the stop (so a loop that never succeeds after an event reports
 * the time from its last success to the stop).
 */
import { now, percentile } from './reliable-ipc.js'

export interface RequestStats {
  sent: number
  ok: number
  failed: number
  p50Ms: number
  p99Ms: number
  /** Longest time without a successful answer between start and stop, ms. */
  longestGapMs: number
  /** Up to 3 distinct failure messages (what the client library said). */
  errors: string[]
}

export interface UploadStats {
  bytes: number
  mbit: number
  longestGapMs: number
}

/** Longest interval between marks, counting start and stop as marks. */
class Gaps {
  #last = 0
  longest = 0
  start (t: number): void { this.#last = t; this.longest = 0 }
  mark (t: number): void { this.longest = Math.max(this.longest, t - this.#last); this.#last = t }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Races `p` against a deadline (the send function may have no timeout of its own). */
export async function withDeadline<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export class RequestLoop {
  readonly #send: (payload: Buffer, timeoutMs: number) => Promise<unknown>
  #running = false
  #loop: Promise<void> | undefined
  readonly #inflight = new Set<Promise<void>>()
  #lat: number[] = []
  #sent = 0
  #failed = 0
  #errors = new Set<string>()
  readonly #gaps = new Gaps()

  /** `send` resolves when the answer arrived (it may reject on its own timeout). */
  constructor (send: (payload: Buffer, timeoutMs: number) => Promise<unknown>) {
    this.#send = send
  }

  start (o: { rate?: number, timeoutMs: number, bytes?: number }): void {
    if (this.#running) throw new Error('request loop already running')
    this.#running = true
    this.#lat = []
    this.#sent = 0
    this.#failed = 0
    this.#errors = new Set()
    const t0 = now()
    this.#gaps.start(t0)
    const payload = Buffer.alloc(o.bytes ?? 256, 0x62)
    const one = (): Promise<void> => {
      this.#sent++
      const t = now()
      const p = withDeadline(this.#send(payload, o.timeoutMs), o.timeoutMs + 1000).then(() => {
        const done = now()
        this.#lat.push(done - t)
        if (this.#running) this.#gaps.mark(done)
      }, (err: unknown) => {
        this.#failed++
        if (this.#errors.size < 3) this.#errors.add(err instanceof Error ? err.message.slice(0, 160) : String(err))
      }).finally(() => { this.#inflight.delete(p) })
      this.#inflight.add(p)
      return p
    }
    this.#loop = (async () => {
      for (let i = 0; this.#running; i++) {
        if (o.rate === undefined) { await one(); continue }
        void one()
        const wait = t0 + ((i + 1) * 1000) / o.rate - now()
        if (wait > 0) await sleep(wait)
      }
    })()
  }

  /** Stop issuing; wait for what is in flight (each has its deadline); the figures. */
  async stop (): Promise<RequestStats> {
    this.#running = false
    // Answers after the stop do not shorten a gap that was open at the stop.
    this.#gaps.mark(now())
    await this.#loop
    await Promise.all([...this.#inflight])
    const gaps = this.#gaps.longest
    const lat = Float64Array.from(this.#lat).sort()
    return {
      sent: this.#sent, ok: this.#lat.length, failed: this.#failed,
      p50Ms: percentile(lat, 0.5), p99Ms: percentile(lat, 0.99), longestGapMs: gaps, errors: [...this.#errors]
    }
  }
}

export class UploadLoop {
  readonly #send: (payload: Buffer) => Promise<unknown>
  #running = false
  #loop: Promise<void> | undefined
  #bytes = 0
  #startAt = 0
  readonly #gaps = new Gaps()

  /** `send` resolves when the receiving side acknowledged the message. */
  constructor (send: (payload: Buffer) => Promise<unknown>) {
    this.#send = send
  }

  start (o: { bytes: number, window: number, timeoutMs: number }): void {
    if (this.#running) throw new Error('upload already running')
    this.#running = true
    this.#bytes = 0
    this.#startAt = now()
    this.#gaps.start(this.#startAt)
    const payload = Buffer.alloc(o.bytes, 0x75)
    const lane = async (): Promise<void> => {
      while (this.#running) {
        try {
          await withDeadline(this.#send(payload), o.timeoutMs)
          if (!this.#running) return
          this.#bytes += payload.length
          this.#gaps.mark(now())
        } catch {
          if (this.#running) await sleep(100) // disconnected: the client library reconnects; try again shortly
        }
      }
    }
    this.#loop = Promise.all(Array.from({ length: o.window }, lane)).then(() => {})
  }

  async stop (): Promise<UploadStats> {
    const stopAt = now()
    const bytes = this.#bytes
    this.#running = false
    this.#gaps.mark(stopAt)
    // In-flight sends are not awaited: on a 2 Mbit/s uplink they may take long; their bytes do not count.
    void this.#loop
    return { bytes, mbit: bytes * 8 / ((stopAt - this.#startAt) / 1000) / 1e6, longestGapMs: this.#gaps.longest }
  }
}

/**
 * The load commands every edge-side child answers the same way:
 *   rr-start {rate?, timeoutMs, bytes?} → {}     rr-stop → RequestStats
 *   up-start {bytes, window, timeoutMs} → {}     up-stop → UploadStats
 * Returns undefined for any other command (the caller's own, or unknown).
 */
export function answerLoad (req: { cmd: string } & Record<string, unknown>, requests: RequestLoop, upload: UploadLoop): Promise<unknown> | undefined {
  switch (req.cmd) {
    case 'rr-start':
      requests.start({ rate: req.rate as number | undefined, timeoutMs: req.timeoutMs as number, bytes: req.bytes as number | undefined })
      return Promise.resolve({})
    case 'rr-stop':
      return requests.stop()
    case 'up-start':
      upload.start({ bytes: req.bytes as number, window: req.window as number, timeoutMs: req.timeoutMs as number })
      return Promise.resolve({})
    case 'up-stop':
      return upload.stop()
    default:
      return undefined
  }
}
