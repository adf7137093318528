/**
 * LMDB-backed aedes persistence (aedes-persistence ≥ 11 async contract), so
 * retained messages, QoS 1/2 sessions (subscriptions, queued outgoing
 * packets, inbound QoS 2 state) and wills survive an edge restart
 * (issue 5, DESIGN.md §8). Verified against aedes-persistence's own abstract
 * suite (test/device/edge-broker-persistence.test.ts).
 *
 * Design: write-through cache, as aedes-cached-persistence does. Topic
 * matching (the qlobber trie) and retained pattern lookup are delegated to
 * aedes-persistence's in-memory implementation; every mutation is also
 * written to LMDB and awaited (a put resolves once committed; lmdb-js groups
 * puts issued in the same tick into one transaction, so a burst shares one
 * commit). On setup() the memory side is rebuilt from LMDB.
 *
 * Keys (one LMDB sub-database, msgpack values):
 *   r\0{topic}                  retained packet
 *   s\0{clientId}               the client's subscriptions (array)
 *   o\0{clientId}\0{seq hex}    queued outgoing packet (seq keeps queue order)
 *   i\0{clientId}\0{messageId}  inbound QoS 2 packet awaiting PUBREL
 *   w\0{clientId}               will
 *   c\0{clientId}               owner of a persistent session {owner, lastSeen}
 *                               (client-ids.ts, issue 13 items 2 and 9)
 *
 * Bounds (issue 13 item 9): at most `maxQueuedPerClient` packets queued per
 * client id (newer ones are dropped and counted: the oldest may already be
 * in flight with a message id), and `removeSession` wipes everything of an
 * abandoned session.
 */
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { Database, RootDatabase } from 'lmdb'

const require = createRequire(import.meta.url)
// Untyped CommonJS modules of aedes' own dependency tree.
const AsyncMemory = require('aedes-persistence/asyncPersistence.js') as new (opts?: object) => MemoryLike
const Packet = require('aedes-packet') as new (p: object, broker?: object) => Pkt

/* eslint-disable @typescript-eslint/no-explicit-any */
type Pkt = Record<string, any> & { messageId?: number, brokerId?: string, brokerCounter?: number, topic: string, payload: Buffer }
interface Client { id: string }
interface Sub { topic: string, qos: number, [k: string]: unknown }
interface MemoryLike {
  setup (broker: unknown): Promise<void>
  storeRetained (p: Pkt): Promise<void>
  createRetainedStream (pattern: string): Readable
  createRetainedStreamCombi (patterns: string[]): Readable
  addSubscriptions (c: Client, subs: Sub[]): Promise<void>
  removeSubscriptions (c: Client, topics: string[]): Promise<void>
  subscriptionsByClient (c: Client): Promise<Sub[]>
  countOffline (): Promise<{ subsCount: number, clientsCount: number }>
  subscriptionsByTopic (pattern: string): Promise<unknown[]>
  cleanSubscriptions (c: Client): Promise<void>
  getClientList (topic: string): Readable
  destroy (): Promise<void>
}

const SEP = '\u0000'

export interface SessionOwner {
  /** Username of the principal that created the persistent session. */
  owner: string
  /** ms since the epoch of the last connect or disconnect. */
  lastSeen: number
}
const hex = (n: number): string => n.toString(16).padStart(13, '0')

function plain (p: Pkt): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(p)) if (v !== undefined) o[k] = v
  return o
}
function revive (o: Record<string, any>): Pkt {
  if (o.payload !== undefined && !Buffer.isBuffer(o.payload)) o.payload = Buffer.from(o.payload as Uint8Array)
  return o as Pkt
}

export class LmdbPersistence {
  readonly #mem: MemoryLike
  readonly #db: Database
  readonly #root: RootDatabase | undefined
  #broker: { id: string } | undefined
  /** clientId → queued packets in order, each with its LMDB key. */
  readonly #outgoing = new Map<string, Array<{ key: string, packet: Pkt }>>()
  readonly #incoming = new Map<string, Map<number, Pkt>>()
  readonly #wills = new Map<string, Pkt>()
  readonly #owners = new Map<string, SessionOwner>()
  #seq = 0
  #destroyed = false
  /** Queue bound per client id. @default Infinity (the broker sets devices.mqttLimits.maxQueuedPerClient) */
  maxQueuedPerClient = Infinity
  /** Called with the client id when a packet is dropped because its queue is full. */
  onQueueDrop: (clientId: string) => void = () => {}
  /** Filters of persistent sessions, restored at setup or added later (broker-subscribers.ts). */
  onSubscriptions: (filters: string[]) => void = () => {}

  /** `db`: a sub-database of an environment the caller owns; pass `owner` to have destroy() close it. */
  constructor (db: Database, owner?: RootDatabase) {
    this.#db = db
    this.#root = owner
    this.#mem = new AsyncMemory()
  }

  /** Owners of persistent sessions, loaded at setup (client-ids.ts keeps them current). */
  get sessionOwners (): ReadonlyMap<string, SessionOwner> { return this.#owners }

  async putSessionOwner (clientId: string, o: SessionOwner): Promise<void> {
    this.#owners.set(clientId, o)
    await this.#db.put('c' + SEP + clientId, o)
  }

  async removeSessionOwner (clientId: string): Promise<void> {
    this.#owners.delete(clientId)
    await this.#db.remove('c' + SEP + clientId)
  }

  /** Queued packets of a client id (quota checks, tests). */
  queued (clientId: string): number { return this.#outgoing.get(clientId)?.length ?? 0 }

  /** Wipe an abandoned (offline) session: subscriptions, queue, QoS 2 state, will and owner record. */
  async removeSession (clientId: string): Promise<void> {
    const c = { id: clientId }
    await this.cleanSubscriptions(c)
    const q = this.#outgoing.get(clientId) ?? []
    this.#outgoing.delete(clientId)
    await Promise.all(q.map(e => this.#db.remove(e.key)))
    await this.cleanIncoming(c)
    if (this.#wills.has(clientId)) await this.delWill(c)
    await this.removeSessionOwner(clientId)
  }

  get broker (): unknown { return this.#broker }

  async setup (broker: { id: string }): Promise<void> {
    this.#broker = broker
    await this.#mem.setup(broker)
    for (const { key, value } of this.#db.getRange({})) {
      const k = String(key)
      const kind = k[0]
      const rest = k.slice(2)
      const v = value as Record<string, any>
      if (kind === 'r') {
        await this.#mem.storeRetained(revive(v))
      } else if (kind === 's') {
        await this.#mem.addSubscriptions({ id: rest }, v as unknown as Sub[])
        this.onSubscriptions((v as unknown as Sub[]).map(x => x.topic))
      } else if (kind === 'o') {
        const [clientId, seqHex] = rest.split(SEP) as [string, string]
        this.#seq = Math.max(this.#seq, parseInt(seqHex, 16))
        const q = this.#outgoing.get(clientId) ?? []
        q.push({ key: k, packet: revive(v) })
        this.#outgoing.set(clientId, q)
      } else if (kind === 'i') {
        const [clientId] = rest.split(SEP) as [string]
        const m = this.#incoming.get(clientId) ?? new Map<number, Pkt>()
        m.set(v.messageId as number, revive(v))
        this.#incoming.set(clientId, m)
      } else if (kind === 'w') {
        this.#wills.set(rest, revive(v))
      } else if (kind === 'c') {
        this.#owners.set(rest, v as SessionOwner)
      }
    }
  }

  async storeRetained (pkt: Pkt): Promise<void> {
    await this.#mem.storeRetained(pkt)
    const key = 'r' + SEP + pkt.topic
    if (pkt.payload.length === 0) await this.#db.remove(key)
    else await this.#db.put(key, plain({ ...pkt }))
  }

  createRetainedStream (pattern: string): Readable { return this.#mem.createRetainedStream(pattern) }
  createRetainedStreamCombi (patterns: string[]): Readable { return this.#mem.createRetainedStreamCombi(patterns) }

  async #saveSubs (client: Client): Promise<void> {
    const subs = await this.#mem.subscriptionsByClient(client)
    const key = 's' + SEP + client.id
    if (subs.length === 0) await this.#db.remove(key)
    else await this.#db.put(key, subs.map(s => plain(s as unknown as Pkt)))
  }

  async addSubscriptions (client: Client, subs: Sub[]): Promise<void> {
    this.onSubscriptions(subs.map(x => x.topic))
    await this.#mem.addSubscriptions(client, subs)
    await this.#saveSubs(client)
  }

  async removeSubscriptions (client: Client, topics: string[]): Promise<void> {
    await this.#mem.removeSubscriptions(client, topics)
    await this.#saveSubs(client)
  }

  async subscriptionsByClient (client: Client): Promise<Sub[]> { return await this.#mem.subscriptionsByClient(client) }
  async countOffline (): Promise<{ subsCount: number, clientsCount: number }> { return await this.#mem.countOffline() }
  async subscriptionsByTopic (pattern: string): Promise<unknown[]> { return await this.#mem.subscriptionsByTopic(pattern) }

  async cleanSubscriptions (client: Client): Promise<void> {
    await this.#mem.cleanSubscriptions(client)
    await this.#db.remove('s' + SEP + client.id)
  }

  async outgoingEnqueue (sub: { clientId: string }, packet: Pkt): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet)
  }

  async outgoingEnqueueCombi (subs: Array<{ clientId: string }>, packet: Pkt): Promise<void> {
    const writes: Array<Promise<unknown>> = []
    for (const sub of subs) {
      if ((this.#outgoing.get(sub.clientId)?.length ?? 0) >= this.maxQueuedPerClient) { this.onQueueDrop(sub.clientId); continue }
      const p = new Packet(packet)
      const key = 'o' + SEP + sub.clientId + SEP + hex(++this.#seq)
      const q = this.#outgoing.get(sub.clientId) ?? []
      q.push({ key, packet: p })
      this.#outgoing.set(sub.clientId, q)
      writes.push(this.#db.put(key, plain(p)))
    }
    await Promise.all(writes)
  }

  /** Same matching as aedes-persistence's memory implementation (brokerId+brokerCounter, else messageId). */
  async outgoingUpdate (client: Client, packet: Pkt): Promise<void> {
    const q = this.#outgoing.get(client.id) ?? []
    for (const entry of q) {
      const temp = entry.packet
      if (temp.brokerId === packet.brokerId) {
        if (temp.brokerCounter === packet.brokerCounter) {
          temp.messageId = packet.messageId
          await this.#db.put(entry.key, plain(temp))
          return
        }
      } else if (temp.messageId === packet.messageId) {
        entry.packet = packet
        await this.#db.put(entry.key, plain(packet))
        return
      }
    }
    throw new Error('no such packet')
  }

  async outgoingClearMessageId (client: Client, packet: { messageId?: number }): Promise<Pkt | undefined> {
    const q = this.#outgoing.get(client.id)
    if (q === undefined) return undefined
    const i = q.findIndex(e => e.packet.messageId === packet.messageId)
    if (i < 0) return undefined
    const [entry] = q.splice(i, 1)
    if (q.length === 0) this.#outgoing.delete(client.id)
    await this.#db.remove(entry!.key)
    return entry!.packet
  }

  outgoingStream (client: Client): Readable {
    return Readable.from((this.#outgoing.get(client.id) ?? []).map(e => e.packet))
  }

  async incomingStorePacket (client: Client, packet: Pkt): Promise<void> {
    const p = new Packet(packet)
    p.messageId = packet.messageId
    const m = this.#incoming.get(client.id) ?? new Map<number, Pkt>()
    m.set(packet.messageId as number, p)
    this.#incoming.set(client.id, m)
    await this.#db.put('i' + SEP + client.id + SEP + String(packet.messageId), plain(p))
  }

  async incomingGetPacket (client: Client, packet: { messageId?: number }): Promise<Pkt> {
    const p = this.#incoming.get(client.id)?.get(packet.messageId as number)
    if (p === undefined) throw new Error('no such packet')
    return p
  }

  async incomingDelPacket (client: Client, packet: { messageId?: number }): Promise<void> {
    const m = this.#incoming.get(client.id)
    if (m?.has(packet.messageId as number) !== true) throw new Error('no such packet')
    m.delete(packet.messageId as number)
    await this.#db.remove('i' + SEP + client.id + SEP + String(packet.messageId))
  }

  async cleanIncoming (client: Client): Promise<void> {
    const m = this.#incoming.get(client.id)
    if (m === undefined) return
    this.#incoming.delete(client.id)
    await Promise.all([...m.keys()].map(id => this.#db.remove('i' + SEP + client.id + SEP + String(id))))
  }

  async putWill (client: Client, packet: Pkt): Promise<void> {
    packet.brokerId = this.#broker?.id
    packet.clientId = client.id
    this.#wills.set(client.id, packet)
    await this.#db.put('w' + SEP + client.id, plain(packet))
  }

  async getWill (client: Client): Promise<Pkt | undefined> { return this.#wills.get(client.id) }

  async delWill (client: Client): Promise<Pkt | undefined> {
    const will = this.#wills.get(client.id)
    this.#wills.delete(client.id)
    await this.#db.remove('w' + SEP + client.id)
    return will
  }

  streamWill (brokers: Record<string, unknown> = {}): Readable {
    return Readable.from([...this.#wills.values()].filter(w => brokers[w.brokerId as string] === undefined))
  }

  getClientList (topic: string): Readable { return this.#mem.getClientList(topic) }

  async destroy (): Promise<void> {
    if (this.#destroyed) throw new Error('destroyed called twice!')
    this.#destroyed = true
    await this.#mem.destroy()
    if (this.#root !== undefined) await this.#root.close()
  }
}
