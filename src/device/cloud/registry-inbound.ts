/**
 * Group commit of upstream `$device` messages (DESIGN.md §8; §11: one
 * awaited LMDB commit per message caps the hub at ≈1.4k reports/s).
 *
 * Messages are applied in arrival order, many per registry transaction: the
 * ones that queue up while a transaction commits go into the next one
 * (at most MAX_BATCH). Inside a transaction each message sees the writes of
 * the ones before it, so per-device order, the edgeSeq stale/gap rules and
 * the resync request (registry-upstream.ts) are exactly as one at a time.
 *
 * Two ways in:
 *  - `apply()` (DeviceRegistry.handleUpstream): resolves once the message is
 *    durable and its cloud → edge messages were handed to the lane.
 *  - `accept()` + `durable()` (the hub's reliable lane, hub.ts
 *    setDeviceHandler): `accept` only queues, so the lane can hand over a
 *    whole data group; the lane calls `durable(node)` before it commits and
 *    acknowledges the group, and that resolves only when every message
 *    accepted from the node since the previous call is durably applied. The
 *    ack point stays "after durable" (at-least-once, DESIGN.md §5).
 *
 * Failure (a transaction that does not commit): its messages are not
 * applied and `durable()` rejects, so the lane does not acknowledge and the
 * edge resends. Until that resend arrives — recognised by a lane seq at or
 * below one already accepted (a rewind) — the node is `failed`: messages
 * accepted after the failed ones are skipped and every `durable()` rejects,
 * because applying them would put later reports before the lost ones, and a
 * later ack is cumulative (it would cover the lost ones). A rewind starts a
 * new generation: queued messages of the old one are skipped (they are
 * resent after the rewind point).
 */
import type { Envelope } from '../../codec/envelope.js'
import { StoreError, toError } from '../../errors.js'
import { DeviceReportError } from '../errors.js'
import type { RegistryContext } from './registry-context.js'
import { applyUpstream, parseUpstream, refuseUpstream, type Upstream } from './registry-edges.js'

/** Messages applied in one transaction at most (one reliable-lane group is ≤ 16 × 64). */
export const MAX_BATCH = 1024
/** Queued messages above which `accept` waits for a transaction to finish (backpressure on the lanes). */
export const MAX_QUEUED = 16 * MAX_BATCH

interface Item {
  nodeId: string
  env: Envelope
  u: Upstream
  /** Lane sequence number; undefined for `apply()` callers (they get the outcome directly). */
  seq: number | undefined
  /** Generation of the node's stream when accepted (see header: rewinds). */
  gen: number
  done: Promise<void>
  resolve: () => void
  reject: (err: Error) => void
}

interface NodeStream {
  /** Highest lane seq accepted in this generation. */
  maxSeq: number
  gen: number
  /** A transaction with messages of this generation failed; nothing more is applied until a rewind. */
  failed: boolean
  /** Accepted since the last `durable()`. */
  unsettled: Item[]
  /** Queued or in the running transaction. */
  queued: number
}

export class UpstreamBatcher {
  readonly #ctx: RegistryContext
  readonly #queue: Item[] = []
  readonly #nodes = new Map<string, NodeStream>()
  #running: Promise<void> | undefined
  #scheduled = false

  constructor (ctx: RegistryContext) {
    this.#ctx = ctx
  }

  /** Apply one message; resolves when it is durable (a refused message resolves too, counted and emitted). */
  async apply (nodeId: string, env: Envelope): Promise<void> {
    const item = this.#stage(nodeId, env, undefined)
    if (item !== undefined) await item.done
  }

  /** Queue one message from `nodeId`'s reliable lane (lane order); `durable(nodeId)` covers it. */
  async accept (nodeId: string, env: Envelope, seq: number): Promise<void> {
    while (this.#queue.length >= MAX_QUEUED && this.#running !== undefined) await this.#running
    this.#stage(nodeId, env, seq)
  }

  /**
   * Resolves when every message accepted from `nodeId` since the previous
   * call is durably applied; rejects (StoreError) when one was not. Returns
   * undefined when nothing is outstanding (the lane's common case for other
   * traffic: no await).
   */
  durable (nodeId: string): Promise<void> | undefined {
    const n = this.#nodes.get(nodeId)
    if (n === undefined) return undefined
    return this.#settle(nodeId, n)
  }

  /** Apply everything queued (used by close, before the store closes). */
  async drain (): Promise<void> {
    while (this.#running !== undefined || this.#queue.length > 0) {
      this.#kick()
      await this.#running
    }
  }

  async #settle (nodeId: string, n: NodeStream): Promise<void> {
    const items = n.unsettled
    n.unsettled = []
    if (items.length > 0) {
      this.#kick()
      await Promise.all(items.map(i => i.done))
    }
    if (n.failed) throw new StoreError(`device messages from ${nodeId} were not applied (an earlier registry write failed); waiting for the lane to resend them`)
    this.#forgetIdle(nodeId, n)
  }

  /** Drop a node's stream state once nothing of it is outstanding (the map stays bounded by busy nodes). */
  #forgetIdle (nodeId: string, n: NodeStream): void {
    if (!n.failed && n.unsettled.length === 0 && n.queued === 0 && this.#nodes.get(nodeId) === n) this.#nodes.delete(nodeId)
  }

  #stage (nodeId: string, env: Envelope, seq: number | undefined): Item | undefined {
    let u: Upstream
    try {
      u = parseUpstream(env)
    } catch (err) {
      if (!(err instanceof DeviceReportError)) throw err
      refuseUpstream(this.#ctx, nodeId, env, err) // a poison message must not block the lane
      return undefined
    }
    let n: NodeStream | undefined
    if (seq !== undefined) {
      n = this.#nodes.get(nodeId)
      if (n === undefined) { n = { maxSeq: 0, gen: 0, failed: false, unsettled: [], queued: 0 }; this.#nodes.set(nodeId, n) }
      if (seq <= n.maxSeq) {
        // Rewind: the lane resends from `seq`; what was accepted from there on is not acked and comes again.
        n.gen++
        n.failed = false
        n.unsettled = n.unsettled.filter(i => i.seq !== undefined && i.seq < seq)
      }
      n.maxSeq = seq
      n.queued++
    }
    let resolve: () => void = () => {}
    let reject: (err: Error) => void = () => {}
    const done = new Promise<void>((res, rej) => { resolve = res; reject = rej })
    done.catch(() => {}) // superseded items have no waiter; the others are awaited by apply()/durable()
    const item: Item = { nodeId, env, u, seq, gen: n?.gen ?? 0, done, resolve, reject }
    n?.unsettled.push(item)
    this.#queue.push(item)
    this.#schedule()
    return item
  }

  /** Start a transaction soon: what the current task still delivers joins it. */
  #schedule (): void {
    if (this.#scheduled || this.#running !== undefined) return
    this.#scheduled = true
    setImmediate(() => { this.#scheduled = false; this.#kick() })
  }

  #kick (): void {
    if (this.#running !== undefined || this.#queue.length === 0) return
    const batch = this.#queue.splice(0, MAX_BATCH)
    this.#running = this.#run(batch).catch(err => { this.#ctx.emitError(toError(err)) }).finally(() => {
      this.#running = undefined
      for (const i of batch) {
        const n = i.seq === undefined ? undefined : this.#nodes.get(i.nodeId)
        if (n !== undefined) { n.queued--; this.#forgetIdle(i.nodeId, n) }
      }
      this.#kick()
    })
  }

  /** One transaction for `batch`; never rejects (outcomes go to the items). */
  async #run (batch: Item[]): Promise<void> {
    const ctx = this.#ctx
    let applied: Array<{ item: Item, count: () => void }> = []
    let refused: Array<{ item: Item, err: DeviceReportError }> = []
    let skipped: Item[] = []
    let handedOff: Promise<void> = Promise.resolve()
    try {
      await ctx.mutate((tx, m) => {
        applied = []; refused = []; skipped = []
        for (const item of batch) {
          const n = item.seq === undefined ? undefined : this.#nodes.get(item.nodeId)
          if (n !== undefined && (n.gen !== item.gen || n.failed)) { skipped.push(item); continue }
          try {
            applied.push({ item, count: applyUpstream(ctx, tx, m, item.nodeId, item.u) })
          } catch (err) {
            // DeviceReportError is thrown before the message's first write (registry-upstream.ts): the others stand.
            if (!(err instanceof DeviceReportError)) throw err
            refused.push({ item, err })
          }
        }
      }, { onDispatch: p => { handedOff = p } })
    } catch (e) {
      const err = toError(e)
      for (const item of batch) {
        const n = item.seq === undefined ? undefined : this.#nodes.get(item.nodeId)
        if (n !== undefined && n.gen === item.gen) n.failed = true
        item.reject(err)
      }
      ctx.logger.warn({ err, messages: batch.length }, 'device messages from edges not applied; the lanes resend them')
      ctx.emitError(err)
      return
    }
    ctx.metrics.upstreamCommits.inc()
    const notApplied = new StoreError('device message not applied: an earlier one from its node failed or the lane rewound')
    for (const item of skipped) item.reject(notApplied)
    // Lane messages are acknowledged once durable; direct callers also wait for the hand-off (as before batching).
    const done = [...applied.map(a => a.item), ...refused.map(r => r.item)]
    for (const item of done) if (item.seq !== undefined) item.resolve()
    const resolveDirect = (): void => { for (const item of done) if (item.seq === undefined) item.resolve() }
    if (done.some(i => i.seq === undefined)) void handedOff.then(resolveDirect, resolveDirect) // a failed hand-off is retried by the dispatcher
    for (const { count } of applied) count()
    for (const { item, err } of refused) refuseUpstream(ctx, item.nodeId, item.env, err)
  }
}
