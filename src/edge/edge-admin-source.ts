/**
 * The edge as its console API (src/ops/admin-edge.ts) reads it: hub link,
 * reliable outbox/inbox, modules, devices and twins, MQTT clients, dead
 * letters and warnings. Kept apart from edge-node.ts so src/ops never
 * imports the edge.
 */
import type { EdgeSource } from '../ops/admin-edge.js'
import { packageVersion } from '../ops/build-info.js'
import { diskWarning, expiryWarning } from '../ops/warnings.js'
import { decodeJoinToken } from '../identity/token.js'
import { defaultCodec } from '../codec/codec.js'
import type { EdgeNode } from './edge-node.js'

export function edgeAdminSource (edge: EdgeNode, o: { dataDir: string, token: string | undefined, adminTokenConfigured: () => boolean }): EdgeSource {
  let url: string | undefined
  let since: number | undefined
  let disconnectedAt: number | undefined = Date.now()
  let everConnected = false
  edge.on('connected', e => { url = e.url; since = Date.now(); disconnectedAt = undefined; everConnected = true })
  edge.on('disconnected', () => { since = undefined; disconnectedAt = Date.now() })
  const tokenExp = (() => { try { return o.token === undefined ? undefined : decodeJoinToken(o.token).exp * 1000 } catch { return undefined } })()
  return {
    nodeId: edge.nodeId,
    state: () => edge.state,
    link () {
      const st = edge.connectionStats()
      return {
        url, transport: url === undefined ? undefined : new URL(url).protocol.replace(':', ''), since, rttMs: edge.rttMs,
        lastError: edge.lastError?.message, ...(st === undefined ? {} : { bytesSent: st.bytesSent, bytesReceived: st.bytesReceived })
      }
    },
    outbox () {
      const st = edge.store.outboxStats('cloud')
      const head = st.count === 0 ? undefined : edge.store.pending('cloud', st.firstSeq - 1, 1)[0]
      const lane = edge.laneStats()
      return { ...st, ...lane, oldestAt: head?.enqueuedAt }
    },
    inbox: () => ({ receivedSeq: edge.store.receivedSeq('cloud') }),
    modules: () => edge.bus.stats(),
    devices () {
      const d = edge.devices
      if (d === undefined) return []
      return d.listDevices().slice(0, 200).map(x => {
        const twin = d.getTwin(x.namespace, x.name)
        // reported values carry the mapper's timestamp; the console shows the values
        const reported = twin === undefined ? {} : Object.fromEntries(Object.entries(twin.reported).map(([k, v]) => [k, (v as { value?: unknown }).value ?? v]))
        return { id: `${x.namespace}/${x.name}`, revision: x.revision, state: x.state, twin: twin === undefined ? undefined : { ...twin, reported } }
      })
    },
    mqttClients: (offset, limit, q) => edge.devices?.broker?.clients.page(offset, limit, q),
    // The edge has one upstream outbox (peer `cloud`): any other peer has no dead letters here.
    deadLetters: (peer, limit) => peer === undefined || peer === 'cloud' ? edge.store.deadLetters('cloud', limit) : [],
    // Requeue = a fresh reliable send of the kept message (same id, timestamp now so its TTL counts from
    // the requeue), then the dead letter goes; as on the hub (src/hub/fleet-source.ts).
    async requeue (peer, seq) {
      const body = peer === 'cloud' ? edge.store.deadLetterBody?.('cloud', seq) : undefined
      if (body === undefined) throw new Error(`dead letter ${peer}/${seq} has no kept message`)
      const env = defaultCodec.decode(body)
      env.header.timestamp = Date.now()
      await edge.sendUpstream(env)
      await edge.store.purgeDeadLetters?.('cloud', [seq])
      return { seq: edge.store.outboxStats('cloud').lastSeq }
    },
    purge: async (peer, seqs) => peer === undefined || peer === 'cloud' ? await (edge.store.purgeDeadLetters?.('cloud', seqs) ?? 0) : 0,
    onLinkEvent (fn) {
      const c = (e: { url: string }): void => fn({ type: 'connected', url: e.url })
      const d = (e: { reason: string }): void => fn({ type: 'disconnected', reason: e.reason })
      edge.on('connected', c)
      edge.on('disconnected', d)
      return () => { edge.off('connected', c); edge.off('disconnected', d) }
    },
    async warnings () {
      const w: string[] = []
      const disk = await diskWarning(o.dataDir)
      if (disk !== undefined) w.push(disk)
      // Security warnings of the device broker (anonymous MQTT access on), as the status page shows them.
      w.push(...(edge.devices?.warnings ?? []))
      // The join token matters until the first join (the node key is bound then): warn only before it.
      const exp = everConnected ? undefined : expiryWarning('the join token', tokenExp, Date.now(), 86_400_000)
      if (exp !== undefined) w.push(exp + ': create a new one with "edgefabric token create" if the node cannot join in time')
      if (disconnectedAt !== undefined && Date.now() - disconnectedAt > 60_000) w.push(`not connected to the hub for ${Math.round((Date.now() - disconnectedAt) / 1000)} s; messages queue in the outbox`)
      if (!o.adminTokenConfigured()) w.push('no admin token: the admin API is read-only for everyone')
      return w
    },
    info: () => ({ role: 'edge', nodeId: edge.nodeId, version: packageVersion(), nodeVersion: process.versions.node })
  }
}
