/**
 * Transactional outbox between the device registry and the hub's reliable
 * lane (DESIGN.md §5, §8). A change and the cloud → edge message it causes
 * are committed in the same registry transaction (`Dispatcher.put`); after
 * the commit `flush()` hands the message to `sink.sendReliable` (which makes
 * it durable in the node's outbox) and only then removes the record. A crash
 * in between re-sends it on the next open; the lane's resourceVersion
 * supersession and the edge's stale check make the repeat harmless.
 *
 * One record per (node, resource): a newer change to the same resource
 * overwrites an older record not yet handed over, like outbox supersession.
 * A lane refusal (quota) or failure keeps the record and retries every
 * `retryMs`, counted — nothing is dropped.
 */
import type { Clock, TimerHandle } from '../../util/clock.js'
import { newMessage } from '../../codec/envelope.js'
import { toError } from '../../errors.js'
import type { Logger } from '../../ops/logger.js'
import type { DeviceMetrics } from './registry-metrics.js'
import type { DeviceKv, KvTxn } from './registry-store.js'
import type { Dispatch, DeviceSink } from './registry-types.js'
import { DEVICE_GROUP } from '../protocol.js'

type Stored = Dispatch & { n: number }

export function dispatchKey (nodeId: string, resource: string): string { return `${nodeId}\u0000${resource}` }

export class Dispatcher {
  sink: DeviceSink | undefined
  readonly #kv: DeviceKv
  readonly #metrics: DeviceMetrics
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #retryMs: number
  readonly #onError: (err: Error) => void
  #timer: TimerHandle | undefined
  #closed = false
  readonly #inflight = new Set<Promise<void>>()

  constructor (kv: DeviceKv, metrics: DeviceMetrics, clock: Clock, logger: Logger, retryMs: number, onError: (err: Error) => void) {
    this.#kv = kv
    this.#metrics = metrics
    this.#clock = clock
    this.#logger = logger
    this.#retryMs = retryMs
    this.#onError = onError
  }

  /** Inside a registry transaction: record a message for `d.nodeId`. Returns its key for flush(). */
  static put (tx: KvTxn, d: Dispatch): string {
    const n = (tx.get<number>('meta', 'dispatchN') ?? 0) + 1
    tx.put('meta', 'dispatchN', n)
    const key = dispatchKey(d.nodeId, d.resource)
    tx.put('dispatch', key, { ...d, n } satisfies Stored)
    return key
  }

  /** Records not yet accepted by the lane. */
  pendingCount (): number { return this.#kv.count('dispatch') }

  /** Hand records (the given keys, or all) to the sink; resolves when this round is done. */
  flush (keys?: string[]): Promise<void> {
    if (this.#closed || this.sink === undefined) return Promise.resolve()
    const p = this.#round(keys)
    this.#inflight.add(p)
    void p.finally(() => this.#inflight.delete(p))
    return p
  }

  async #round (keys: string[] | undefined): Promise<void> {
    const sink = this.sink
    if (sink === undefined) return
    const list: Array<{ key: string, d: Stored }> = keys === undefined
      ? this.#kv.entries<Stored>('dispatch').map(e => ({ key: e.key as string, d: e.value }))
      : [...new Set(keys)].flatMap(key => { const d = this.#kv.get<Stored>('dispatch', key); return d === undefined ? [] : [{ key, d }] })
    if (list.length === 0) return
    let failed = false
    const done: Array<{ key: string, n: number }> = []
    await Promise.all(list.map(async ({ key, d }) => {
      const env = newMessage({
        source: 'cloud',
        group: DEVICE_GROUP,
        operation: d.operation,
        resource: d.resource,
        content: d.content,
        ...(d.version === null ? {} : { resourceVersion: d.version })
      })
      try {
        const outcome = await sink.sendReliable(d.nodeId, env)
        this.#metrics.dispatched.inc({ operation: d.operation, outcome: outcome.status })
        if (outcome.status === 'rejected') {
          failed = true
          this.#logger.warn({ nodeId: d.nodeId, resource: d.resource, reason: outcome.reason }, 'device message refused by the lane; retrying')
        } else {
          done.push({ key, n: d.n })
        }
      } catch (err) {
        failed = true
        this.#metrics.dispatched.inc({ operation: d.operation, outcome: 'error' })
        this.#onError(toError(err))
      }
    }))
    if (done.length > 0 && !this.#closed) {
      try {
        await this.#kv.transaction(tx => {
          for (const { key, n } of done) if (tx.get<Stored>('dispatch', key)?.n === n) tx.remove('dispatch', key)
        })
      } catch (err) {
        // The records stay; a later flush re-sends them and the lane answers 'stale'.
        failed = true
        this.#onError(toError(err))
      }
    }
    if (failed) this.#scheduleRetry()
  }

  #scheduleRetry (): void {
    if (this.#closed || this.#timer !== undefined) return
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      void this.flush()
    }, this.#retryMs)
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    await Promise.allSettled([...this.#inflight])
  }
}
