/**
 * One NATS connection per hub, the JetStream streams and KV buckets of the
 * cluster (created idempotently by whichever hub starts first), and the
 * availability flag behind "a hub that loses NATS stops accepting new work
 * with a typed error and recovers by itself" (issue 17).
 */
import { readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { connect, credsAuthenticator, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type JetStreamPublishOptions, type PubAck, type StreamConfig } from '@nats-io/jetstream'
import type { Payload } from '@nats-io/transport-node'
import { Kvm, type KV } from '@nats-io/kv'
import { InvalidOptionError } from '../errors.js'
import { intOption, stringOption } from '../util/options.js'
import type { Logger } from '../ops/logger.js'
import { Names } from './subjects.js'
import { ClusterUnavailableError, type ClusterOptions } from './types.js'

/** Messages a resource subject of the downstream stream retains (see #ensure). */
export const RESOURCE_HISTORY = 4

export interface ResolvedClusterOptions {
  servers: string[]
  name: string
  credsFile: string | undefined
  replicas: number
  identitySecret: string | undefined
  maxAgeMs: number
  timeoutMs: number
  hubName: string
  registrySnapshotEvery: number
}

/** Validate once, name the option, freeze (PREAMBLE: options). */
export function resolveClusterOptions (o: ClusterOptions, env: NodeJS.ProcessEnv = process.env): Readonly<ResolvedClusterOptions> {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionError('cluster', 'must be an object')
  const servers = o.servers
  if (!Array.isArray(servers) || servers.length === 0 || !servers.every(s => typeof s === 'string' && /^(nats|tls|ws|wss):\/\/[^\s]+$/i.test(s))) {
    throw new InvalidOptionError('cluster.servers', 'must be a non-empty array of nats:// URLs')
  }
  const name = stringOption('cluster.name', o.name, 'default') as string
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(name)) throw new InvalidOptionError('cluster.name', 'must be 1-32 letters, digits, "-" or "_"')
  const hubName = stringOption('cluster.hubName', o.hubName, `${hostname().replace(/[^A-Za-z0-9-]/g, '-')}-${process.pid}-${randomBytes(3).toString('hex')}`) as string
  if (!/^[A-Za-z0-9-]{1,64}$/.test(hubName)) throw new InvalidOptionError('cluster.hubName', 'must be 1-64 letters, digits or "-"')
  const secret = stringOption('cluster.identitySecret', o.identitySecret ?? (env.EDGEFABRIC_CLUSTER_SECRET === '' ? undefined : env.EDGEFABRIC_CLUSTER_SECRET))
  if (secret !== undefined && secret.length < 16) throw new InvalidOptionError('cluster.identitySecret', 'must be at least 16 characters')
  const every = o.registrySnapshotEvery ?? 10_000
  if (!Number.isSafeInteger(every) || every < 0 || every === 1) throw new InvalidOptionError('cluster.registrySnapshotEvery', `must be 0 (off) or an integer ≥ 2, got ${String(every)}`)
  return Object.freeze({
    servers: [...servers],
    name,
    credsFile: stringOption('cluster.credsFile', o.credsFile),
    replicas: intOption('cluster.replicas', o.replicas, 3, 1, 5),
    identitySecret: secret,
    maxAgeMs: intOption('cluster.maxAgeMs', o.maxAgeMs, 7 * 86_400_000, 60_000),
    timeoutMs: intOption('cluster.timeoutMs', o.timeoutMs, 5000, 100, 120_000),
    hubName,
    registrySnapshotEvery: every
  })
}

const NS = 1_000_000

export class ClusterConnection {
  readonly nc: NatsConnection
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  readonly names: Names
  readonly options: Readonly<ResolvedClusterOptions>
  readonly logger: Logger
  presence!: KV
  bindings!: KV
  inbox!: KV
  identity!: KV
  #available = true
  #lastError: Error | undefined
  readonly #listeners = new Set<(available: boolean) => void>()
  #leaderEpoch = 0

  /**
   * Changes whenever the downstream stream may have changed leader: a leader-elected advisory for
   * it, a disconnect or reconnect, a request failing for transport reasons. What one leader showed
   * about its numbering holds only while this stays the same (outbox-range-settle.ts).
   */
  get leaderEpoch (): number { return this.#leaderEpoch }

  private constructor (nc: NatsConnection, jsm: JetStreamManager, options: Readonly<ResolvedClusterOptions>, logger: Logger) {
    this.nc = nc
    this.jsm = jsm
    this.js = jetstream(nc, { timeout: options.timeoutMs })
    this.options = options
    this.names = new Names(options.name)
    this.logger = logger
  }

  static async open (options: Readonly<ResolvedClusterOptions>, logger: Logger): Promise<ClusterConnection> {
    let nc: NatsConnection
    try {
      nc = await connect({
        servers: options.servers,
        name: `edgefabric-hub-${options.hubName}`,
        // Keep trying for ever: a hub that lost NATS must recover by itself (issue 17).
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 100,
        pingInterval: 2000,
        maxPingOut: 2,
        timeout: options.timeoutMs,
        // The client otherwise builds a RequestError and a TimeoutError (each with a captured stack)
        // for every request and publish, only to keep the caller's stack for a failure: 7.6 % of the
        // hub's main thread in bench/cluster. Our failures name their operation (call(what)) instead.
        noAsyncTraces: true,
        ...(options.credsFile === undefined ? {} : { authenticator: credsAuthenticator(await readFile(options.credsFile)) })
      })
    } catch (err) {
      throw new ClusterUnavailableError(`cannot connect to NATS at ${options.servers.join(', ')}: ${(err as Error).message}`, { cause: err })
    }
    try {
      const jsm = await jetstreamManager(nc, { timeout: options.timeoutMs })
      const c = new ClusterConnection(nc, jsm, options, logger)
      await c.#ensure()
      await c.#anchor()
      c.#watchStatus()
      c.#watchLeader()
      c.#anchorTimer = setInterval(() => { void c.#anchor().catch(() => {}) }, Math.min(3_600_000, Math.floor(options.maxAgeMs / 4)))
      c.#anchorTimer.unref()
      return c
    } catch (err) {
      await nc.close().catch(() => {})
      if (err instanceof ClusterUnavailableError) throw err
      throw new ClusterUnavailableError(`JetStream is not usable at ${options.servers.join(', ')}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Streams and buckets, created if absent (every hub runs this; equal configs are accepted). */
  async #ensure (): Promise<void> {
    const n = this.names
    const r = this.options.replicas
    const maxAge = this.options.maxAgeMs * NS
    await this.#stream({
      name: n.streamDown,
      subjects: [`${n.prefix}.down.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: r,
      // Supersession (DESIGN.md §10b): a resource's subject keeps its newest message; up to
      // RESOURCE_HISTORY are retained so that an older version landing late from another hub does
      // not replace a newer one: the publisher deletes all but the newest (store.ts #publishOne).
      // Unversioned messages get a subject each, so this limit never touches them.
      max_msgs_per_subject: RESOURCE_HISTORY,
      max_age: maxAge,
      discard: DiscardPolicy.Old,
      duplicate_window: 120 * 1000 * NS,
      allow_direct: true
    })
    await this.#stream({
      name: n.streamUp,
      subjects: [`${n.prefix}.up.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: r,
      max_age: maxAge,
      duplicate_window: 120 * 1000 * NS
    })
    await this.#stream({
      name: n.streamDead,
      subjects: [`${n.prefix}.dead.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: r,
      max_age: maxAge,
      max_msgs_per_subject: 1000
    })
    const kvm = new Kvm(this.js)
    this.presence = await kvm.create(n.bucketPresence, { replicas: r, history: 1 })
    this.bindings = await kvm.create(n.bucketBindings, { replicas: r, history: 1 })
    this.inbox = await kvm.create(n.bucketInbox, { replicas: r, history: 1 })
    this.identity = await kvm.create(n.bucketIdentity, { replicas: r, history: 1 })
  }

  async #stream (cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
    try {
      const info = await this.jsm.streams.info(cfg.name)
      // A stream made by an older hub with one message per subject: raise it (an update of limits only).
      if (cfg.max_msgs_per_subject !== undefined && info.config.max_msgs_per_subject !== cfg.max_msgs_per_subject) {
        await this.jsm.streams.update(cfg.name, { max_msgs_per_subject: cfg.max_msgs_per_subject })
      }
      return
    } catch (err) {
      if (!/not found/i.test((err as Error).message)) throw err
    }
    try {
      await this.jsm.streams.add(cfg)
    } catch (err) {
      // Another hub created it between our info and add.
      if (!/already in use|exists/i.test((err as Error).message)) throw err
    }
  }

  #anchorTimer: NodeJS.Timeout | undefined

  /**
   * Keep one message in EF_<C>_DOWN that no purge touches (`ef.<c>.down._anchor`: four
   * tokens, while every node filter `ef.<c>.down.<node>.>` needs five or more). Measured
   * with nats-server 2.9.10 (test/cluster/nats-loss.test.ts): when every message of the
   * stream had been purged (all outboxes acknowledged) and the server was SIGKILLed and
   * restarted, the stream came back at sequence 0 and handed out seq 1 again. The outbox
   * protocol needs per-node sequences that never go back (the reader resumes after the
   * last seq it read; the edge drops seq ≤ what it holds as a duplicate): the message after
   * the restart was never delivered. A stream that is never empty keeps its last sequence.
   * Re-published every maxAge/4 (at most hourly) so max_age never empties the stream;
   * max_msgs_per_subject keeps a few (RESOURCE_HISTORY).
   */
  async #anchor (): Promise<void> {
    const h = natsHeaders()
    h.set('Ef-Anchor', '1')
    await this.js.publish(`${this.names.prefix}.down._anchor`, new Uint8Array(0), { headers: h })
  }

  /** `$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.<stream>` (nats-server ≥ 2.2) moves leaderEpoch. */
  #watchLeader (): void {
    this.nc.subscribe(`$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.${this.names.streamDown}`, {
      callback: () => { this.#leaderEpoch++ }
    })
  }

  #watchStatus (): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect') this.#leaderEpoch++
        if (s.type === 'disconnect') this.#set(false, new Error('disconnected from NATS'))
        else if (s.type === 'reconnect') {
          void this.#anchor().catch(() => {})
          this.#set(true)
          for (const l of this.#listeners) l(true) // consumers on the lost server are gone: readers restart
        }
      }
    })().catch(() => {})
  }

  /** Called by users of the connection when a JetStream call failed or succeeded. */
  noteFailure (err: Error): void {
    // Only transport-level trouble flips availability; an API error answer means JetStream works.
    if (/timeout|no responders|not enabled|disconnect|closed|connection/i.test(err.message)) {
      this.#leaderEpoch++ // a stream without a leader times out: an election may be under way
      this.#set(false, err)
    }
  }

  noteSuccess (): void { this.#set(true) }

  #probe: NodeJS.Timeout | undefined

  #set (available: boolean, err?: Error): void {
    if (err !== undefined) this.#lastError = err
    if (this.#available === available) return
    this.#available = available
    // While unavailable, ask JetStream every second whether it answers again: refusing work
    // (check()) must not stop the very calls that would notice the recovery. A reconnect
    // (#watchStatus) or any call that succeeds also ends it.
    clearInterval(this.#probe)
    this.#probe = undefined
    if (!available && !this.nc.isClosed()) {
      this.#probe = setInterval(() => {
        if (this.nc.isClosed() || this.nc.isDraining()) { clearInterval(this.#probe); return }
        this.jsm.getAccountInfo().then(() => this.noteSuccess(), () => {})
      }, 1000)
      this.#probe.unref()
    }
    this.logger.warn({ available, err: err?.message }, available ? 'cluster available again' : 'cluster unavailable')
    for (const l of this.#listeners) l(available)
  }

  get available (): boolean { return this.#available && !this.nc.isClosed() }

  onAvailability (fn: (available: boolean) => void): void { this.#listeners.add(fn) }

  /** Throws ClusterUnavailableError when NATS is known to be unreachable (before starting new work). */
  check (what: string): void {
    if (!this.available) throw new ClusterUnavailableError(`${what}: the cluster (NATS JetStream) is unavailable${this.#lastError === undefined ? '' : ` (${this.#lastError.message})`}`)
  }

  /** Wrap a JetStream call: failures become ClusterUnavailableError when the cluster is unreachable. */
  async call<T> (what: string, fn: () => Promise<T>): Promise<T> {
    try {
      const v = await fn()
      this.noteSuccess()
      return v
    } catch (err) {
      this.noteFailure(err as Error)
      if (!this.available) throw new ClusterUnavailableError(`${what}: ${(err as Error).message}`, { cause: err })
      throw err
    }
  }

  /**
   * A JetStream publish that resolves only once the message is stored. A PubAck
   * `{duplicate: true, seq: 0}` says the server did NOT store it: nats-server 2.9 records a
   * Nats-Msg-Id when it proposes the message, with seq 0 until the proposal commits; a
   * proposal lost with a stream leader leaves the id answering "duplicate, seq 0" for the
   * whole duplicate window, and taking that for a PubAck acknowledges a message nobody has.
   * Publish again under a derived id; the envelope id (Ef-Id) stays, so a receiver still
   * drops a second copy should the first proposal commit after all.
   */
  async publishStored (subject: string, payload: Payload, opts: Partial<JetStreamPublishOptions>): Promise<PubAck> {
    let ack = await this.js.publish(subject, payload, opts)
    for (let attempt = 1; ack.duplicate && ack.seq === 0; attempt++) {
      if (attempt > 3) throw new ClusterUnavailableError(`JetStream answered "duplicate, not stored" for ${subject} ${attempt - 1} times`)
      this.logger.warn({ subject, msgID: opts.msgID }, 'JetStream: duplicate with seq 0 (not stored); publishing again under a new id')
      ack = await this.js.publish(subject, payload, { ...opts, ...(opts.msgID === undefined ? {} : { msgID: `${opts.msgID}~${attempt}` }) })
    }
    return ack
  }

  async close (): Promise<void> {
    clearInterval(this.#probe)
    clearInterval(this.#anchorTimer)
    if (this.nc.isClosed()) return
    await this.nc.drain().catch(async () => { await this.nc.close() })
  }
}
