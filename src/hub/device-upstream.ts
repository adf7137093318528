/**
 * How the hub hands reliable upstream `$device` messages to the device
 * registry (DESIGN.md §5, §8) with group commit and the ack point intact.
 *
 * The lane's receiver (src/reliable/receiver.ts) delivers a data group one
 * message at a time, awaiting each, then commits the group and only then
 * acknowledges it. If the registry had to make each message durable inside
 * that await, every report would cost one registry commit (≈1.4k/s,
 * DESIGN.md §11). Instead the handler only *accepts* a message (queues it
 * for the registry's next transaction), and the lane's store is wrapped so
 * that `commitInbound` — the step right before the ack — first waits for
 * `durable(node)`: every message accepted from that node is applied and
 * committed by the registry. A registry failure rejects the commit, so the
 * group is not acknowledged and the edge resends it (at-least-once).
 */
import type { Envelope } from '../codec/envelope.js'
import type { ReliableStore } from '../reliable/store.js'

/** Consumer of reliable upstream `$device` messages (DeviceRegistry: acceptUpstream / upstreamDurable). */
export interface DeviceUpstreamHandler {
  /**
   * Take message `seq` of `nodeId`'s lane, in lane order. May resolve before
   * the message is durable; `durable` must then cover it. A rejection
   * refuses the message (the lane nacks it and the edge resends it).
   */
  accept: (nodeId: string, env: Envelope, seq: number) => Promise<void>
  /**
   * Resolves once everything accepted from `nodeId` is durable; rejects when
   * some of it was not applied. Undefined when nothing is outstanding.
   */
  durable: (nodeId: string) => Promise<void> | undefined
}

/**
 * `store` as the lanes see it: `commitInbound(peer, …)` first awaits
 * `barrier(peer)`. A Proxy rather than a delegating class so that every
 * other member (the store contract grows) reaches the store unchanged, bound
 * to it (stores keep state in private fields).
 */
export function withInboundBarrier (store: ReliableStore, barrier: (peer: string) => Promise<void> | undefined): ReliableStore {
  const bound = new Map<PropertyKey, unknown>()
  const commitInbound: ReliableStore['commitInbound'] = async (peer, items, now) => {
    const b = barrier(peer)
    if (b !== undefined) await b
    return await store.commitInbound(peer, items, now)
  }
  return new Proxy(store, {
    get (target, prop) {
      if (prop === 'commitInbound') return commitInbound
      const v: unknown = Reflect.get(target, prop, target)
      if (typeof v !== 'function') return v
      let f = bound.get(prop)
      if (f === undefined) { f = (v as (...a: unknown[]) => unknown).bind(target); bound.set(prop, f) }
      return f
    }
  })
}
