/**
 * The hub as the fleet API (src/ops/admin-fleet.ts) reads it: node
 * snapshots, queue depths from the reliable store, lane state, session
 * counters, dead letters, device twins and warnings. Kept apart from hub.ts
 * so the admin layer (src/ops) never imports the hub.
 */
import type { FleetSource } from '../ops/admin-fleet.js'
import { defaultCodec } from '../codec/codec.js'
import { packageVersion } from '../ops/build-info.js'
import { diskWarning, tokenExpiryWarning } from '../ops/warnings.js'
import type { Hub } from './hub.js'

export function hubFleetSource (hub: Hub, o: { dataDir: string, adminTokenConfigured: () => boolean, adminHost: string }): FleetSource {
  const store = hub.store
  return {
    nodes: () => hub.nodes(),
    node: id => hub.node(id),
    queued () {
      const m = new Map<string, { count: number, bytes: number }>()
      if (store === undefined) return m
      if (store.pendingStats !== undefined) {
        for (const s of store.pendingStats()) m.set(s.peer, { count: s.count, bytes: s.bytes })
        return m
      }
      for (const peer of store.peersWithPending()) {
        const st = store.outboxStats(peer)
        if (st.count > 0) m.set(peer, { count: st.count, bytes: st.bytes })
      }
      return m
    },
    outbox (id) {
      const st = store?.outboxStats(id) ?? { count: 0, bytes: 0, firstSeq: 0, lastSeq: 0 }
      const lane = hub.reliableLane(id)
      return { ...st, inflight: lane?.sender.inflight ?? 0, acked: lane?.sender.acked ?? 0 }
    },
    outboxHead (id, limit) {
      if (store === undefined) return []
      const st = store.outboxStats(id)
      if (st.count === 0) return []
      return store.pending(id, st.firstSeq - 1, limit).map(r => ({
        seq: r.seq, id: r.id, key: r.key, op: r.op, size: r.bytes.byteLength, enqueuedAt: r.enqueuedAt, expiresAt: r.expiresAt, rejections: r.rejections
      }))
    },
    traffic (id) {
      const st = hub.nodeStats(id)
      return st === undefined ? undefined : { bytesSent: st.bytesSent, bytesReceived: st.bytesReceived, messagesSent: st.messagesSent, messagesReceived: st.messagesReceived }
    },
    deadLetters: (id, limit) => store?.deadLetters(id, limit) ?? [],
    ...(store?.deadLetterBody === undefined || store.purgeDeadLetters === undefined
      ? {}
      : {
          // Requeue = a fresh reliable send of the kept message (same id; timestamp now, so its TTL counts
          // from the requeue), then the dead letter is removed. Lanes use the default codec unless the hub
          // was given another one; then decoding fails and the API answers 500.
          requeue: async (id: string, seq: number) => {
            const body = store.deadLetterBody?.(id, seq)
            if (body === undefined) throw new Error(`dead letter ${id}/${seq} has no kept message`)
            const env = defaultCodec.decode(body)
            env.header.timestamp = Date.now()
            const outcome = await hub.sendReliable(id, env)
            if (outcome.status !== 'queued') throw new Error(`requeue refused: ${outcome.status === 'rejected' ? outcome.reason : 'a newer version is pending'}`)
            await store.purgeDeadLetters?.(id, [seq])
            return { seq: outcome.seq }
          },
          purge: async (id: string | undefined, seqs: number[] | undefined) => await (store.purgeDeadLetters?.(id, seqs) ?? 0)
        }),
    devices (id) {
      const reg = hub.devices
      if (reg === undefined) return []
      return reg.listDevices({ nodeId: id, limit: 200 }).map(d => ({
        id: `${d.spec.namespace}/${d.spec.name}`, model: d.spec.model, state: d.state, revision: d.revision, syncedRevision: d.syncedRevision,
        resyncPending: d.resyncPending, lastSeen: d.lastSeen,
        desired: Object.fromEntries(Object.entries(d.desired).map(([k, v]) => [k, v.value])),
        reported: Object.fromEntries(Object.entries(d.reported).map(([k, v]) => [k, (v as { value: unknown }).value]))
      }))
    },
    onNodeEvent (fn) {
      const h = (e: import('./types.js').HubEvent): void => {
        if (e.type === 'node-connected') fn({ type: 'connected', nodeId: e.nodeId, transport: e.transport })
        else if (e.type === 'node-disconnected') fn({ type: 'disconnected', nodeId: e.nodeId, reason: e.reason })
      }
      hub.on('event', h)
      return () => { hub.off('event', h) }
    },
    async warnings () {
      const w: string[] = []
      const disk = await diskWarning(o.dataDir)
      if (disk !== undefined) w.push(disk)
      const tokens = tokenExpiryWarning(await hub.bindings.tokens().catch(() => []), hub.clock.now())
      if (tokens !== undefined) w.push(tokens)
      if (!o.adminTokenConfigured()) w.push('no admin token: the admin API is read-only for everyone')
      if (o.adminHost !== '127.0.0.1' && o.adminHost !== '::1' && o.adminHost !== 'localhost') w.push(`the admin server listens on ${o.adminHost} over plain HTTP: use a TLS proxy in front of it`)
      if (hub.devices === undefined) w.push('device registry disabled (start with --devices to manage device twins)')
      return w
    },
    info: () => ({ role: 'hub', version: packageVersion(), nodeVersion: process.versions.node, listening: hub.urls, identity: { caFingerprint: hub.identity.caFingerprint } })
  }
}
