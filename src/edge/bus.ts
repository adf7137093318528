/**
 * The edge module bus (KubeEdge Beehive role, DESIGN.md §7): named modules in
 * groups, send / sendToGroup / request-respond, bounded mailboxes with an
 * explicit overflow policy, and routing of messages from the hub by
 * `router.destination` (a registered module name) else `router.group`.
 *
 * The edge runtime owns one bus: it feeds hub messages to `dispatch(env,
 * 'cloud')`, gives the bus an `upstream` function for messages to the cloud,
 * and calls `broadcastState()` on connection changes.
 *
 * Where a response goes: the bus remembers, per delivered envelope (a WeakMap,
 * so nothing leaks and the wire format is untouched), whether it came from the
 * cloud (dispatch with origin 'cloud') or from a local module (send /
 * sendToGroup / request). respond() sends upstream for the former and back to
 * the requesting module for the latter. For an envelope the bus never
 * delivered, `router.source` decides: 'cloud…' → upstream, a registered module
 * → that module. A module that forwards a received envelope with send()
 * becomes its origin, so the answer comes back to the forwarder.
 */
import { systemClock, type Clock } from '../util/clock.js'
import { isExpired, newErrorResponse, newMessage, newResponse, type Envelope } from '../codec/envelope.js'
import {
  EdgeFabricError, InvalidOptionError, MailboxFullError, ModuleBusError, toError
} from '../errors.js'
import { intOption, stringOption, boolOption } from '../util/options.js'
import { ModuleHandle, type ErrorReply, type HandleOps } from './bus-handle.js'
import { Mailbox } from './bus-mailbox.js'
import { PendingRequests } from './bus-pending.js'
import { ModuleRegistry, type Module } from './bus-registry.js'
import { estimateEnvelopeBytes } from './bus-size.js'
import {
  DEFAULT_MAILBOX, EDGE_GROUP, noopLogger, resolveMailboxOptions,
  type BusLogger, type BusStats, type ConnectionState, type DeliveryFailure, type DispatchResult, type DropReason,
  type ModuleBusOptions, type RegisterOptions, type RequestOptions, type RequestTarget, type ResolvedMailboxOptions
} from './bus-types.js'

type Origin = { kind: 'cloud' } | { kind: 'local', module?: string }

const CLOUD_ORIGIN: Origin = Object.freeze({ kind: 'cloud' })
const LOCAL_ORIGIN: Origin = Object.freeze({ kind: 'local' })

export class ModuleBus {
  readonly #upstream: (env: Envelope) => Promise<void> | void
  readonly #clock: Clock
  readonly #logger: BusLogger
  readonly #onDrop: ((module: string, reason: DropReason) => void) | undefined
  readonly #defaultMailbox: ResolvedMailboxOptions
  readonly #defaultTimeoutMs: number
  readonly #sizeOf: (env: Envelope) => number
  readonly #ops: HandleOps
  readonly #modules = new ModuleRegistry()
  readonly #pending: PendingRequests
  readonly #origin = new WeakMap<Envelope, Origin>()
  readonly #responded = new WeakSet<Envelope>()
  readonly #unrouted: Partial<Record<DropReason, number>> = {}
  #closed = false
  #dispatched = 0
  #upstreamSent = 0
  #upstreamFailed = 0

  constructor (options: ModuleBusOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'must be an object')
    if (typeof options.upstream !== 'function') throw new InvalidOptionError('upstream', 'must be a function')
    this.#upstream = options.upstream
    this.#clock = options.clock ?? systemClock
    this.#logger = options.logger ?? noopLogger
    this.#onDrop = options.onDrop
    this.#defaultMailbox = resolveMailboxOptions(options.defaultMailbox, DEFAULT_MAILBOX, 'defaultMailbox')
    this.#pending = new PendingRequests(this.#clock, intOption('maxPendingRequests', options.maxPendingRequests, 10_000, 1))
    this.#defaultTimeoutMs = intOption('defaultRequestTimeoutMs', options.defaultRequestTimeoutMs, 30_000, 1)
    this.#sizeOf = options.sizeOf ?? estimateEnvelopeBytes
    this.#ops = {
      send: (from, name, env) => this.#send(from, name, env),
      sendToGroup: (from, group, env) => this.#sendToGroup(from, group, env),
      sendUpstream: env => this.sendUpstream(env),
      request: (from, target, env, opts) => this.#request(from, target, env, opts),
      respond: (from, req, content, error) => this.#respond(from, req, content, error),
      responded: req => this.#responded.has(req),
      unregister: name => { this.unregister(name) },
      logger: this.#logger
    }
  }

  get closed (): boolean { return this.#closed }

  /** Register a module. Throws ModuleBusError('duplicate-module') for a name in use, InvalidOptionError for bad options. */
  register (options: RegisterOptions): ModuleHandle {
    if (this.#closed) throw new ModuleBusError('closed', 'module bus is closed')
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'must be an object')
    const name = stringOption('name', options.name)
    const group = stringOption('group', options.group)
    if (name === undefined || group === undefined) throw new InvalidOptionError(name === undefined ? 'name' : 'group', 'is required')
    const connectionEvents = boolOption('connectionEvents', options.connectionEvents, false)
    if (this.#modules.has(name)) throw new ModuleBusError('duplicate-module', `module "${name}" is already registered`) // before creating anything
    const mailboxOptions = resolveMailboxOptions(options.mailbox, this.#defaultMailbox, 'mailbox')
    const mailbox = new Mailbox(name, mailboxOptions, this.#clock, { dropped: (env, reason) => this.#dropped(name, env, reason) })
    const handle = new ModuleHandle(name, group, mailbox, this.#ops)
    this.#modules.add({ handle, mailbox, connectionEvents })
    this.#logger.debug({ module: name, group }, 'module registered')
    return handle
  }

  /**
   * Remove a module: its queued messages are dropped ('closed', counted; a
   * queued request from the cloud gets an error response upstream), blocked
   * senders and its own pending requests reject with ModuleBusError('closed'),
   * its consumer loop ends. Returns false if no such module.
   */
  unregister (name: string): boolean {
    const m = this.#modules.remove(name)
    if (m === undefined) return false
    m.mailbox.close()
    this.#pending.rejectModule(name, id => new ModuleBusError('closed', `module "${name}" was unregistered with request ${id} pending`))
    return true
  }

  /** The handle of a registered module. */
  get (name: string): ModuleHandle | undefined {
    return this.#modules.get(name)?.handle
  }

  /** Messages queued for module `name`, undefined if not registered. */
  depth (name: string): number | undefined {
    return this.#modules.get(name)?.mailbox.depth
  }

  /**
   * Route a message from the hub (origin 'cloud') or a local producer
   * (origin 'local'): a response matching a pending request resolves it;
   * otherwise `router.destination` naming a registered module wins, else
   * every module of `router.group`. A response to a request that recently
   * finished (timed out / answered) is dropped as 'late-response'; one whose
   * parentId the bus never saw is routed like any message (a module may have
   * used sendUpstream and handle replies itself). Waits for mailbox
   * acceptance, so a caller that awaits it gets backpressure from 'block'
   * mailboxes; never rejects.
   */
  async dispatch (env: Envelope, origin: 'cloud' | 'local' = 'cloud'): Promise<DispatchResult> {
    return await this.route(env, origin)
  }

  /**
   * dispatch() without the promise where no mailbox is involved (a response, a drop, no
   * module): the reliable receiver hands over tens of thousands of messages per second, and
   * an await per message was a measurable share of a drain (issue 16). Never throws.
   */
  route (env: Envelope, origin: 'cloud' | 'local' = 'cloud'): DispatchResult | Promise<DispatchResult> {
    if (this.#closed) return { status: 'closed' }
    this.#dispatched++
    const op = env.router.operation
    const parentId = env.header.parentId
    const target = env.router.destination ?? env.router.group
    if ((op === 'response' || op === 'error') && parentId !== undefined) {
      if (this.#pending.resolve(parentId, env)) return { status: 'response' }
      if (this.#pending.finished(parentId)) { this.#unroutedDrop(target, env, 'late-response'); return { status: 'late-response' } }
    }
    // The clock only for messages with a TTL: route() runs once per drained reliable message (issue 16).
    if (env.header.ttl !== undefined && isExpired(env, this.#clock.now())) { this.#unroutedDrop(target, env, 'expired'); return { status: 'expired' } }
    const dest = env.router.destination
    const direct = dest !== undefined ? this.#modules.get(dest) : undefined
    const members = direct !== undefined ? [direct] : this.#modules.members(env.router.group)
    if (members.length === 0) { this.#unroutedDrop(target, env, 'no-module'); return { status: 'no-module' } }
    this.#origin.set(env, origin === 'cloud' ? CLOUD_ORIGIN : LOCAL_ORIGIN)
    return this.#fanOut(members, env).then(({ modules, failed }) =>
      modules.length > 0 ? { status: 'delivered', modules, failed } : { status: 'rejected', failed })
  }

  /**
   * Tell every module registered with `connectionEvents: true` that the hub
   * link changed: group '$edge', operation 'connected' | 'disconnected',
   * resource 'connection', content { state, timestamp }. These bypass mailbox
   * bounds (a full mailbox must not hide a disconnect); an unconsumed older
   * event is superseded (counted). Returns the number of modules told.
   */
  broadcastState (state: ConnectionState): number {
    if (this.#closed) return 0
    if (state !== 'connected' && state !== 'disconnected') throw new InvalidOptionError('state', 'must be "connected" or "disconnected"')
    const now = this.#clock.now()
    const env = newMessage({
      source: 'edgehub', group: EDGE_GROUP, operation: state, resource: 'connection', timestamp: now,
      priority: 'control', content: { state, timestamp: now }
    })
    this.#origin.set(env, LOCAL_ORIGIN)
    let n = 0
    for (const m of this.#modules.all()) {
      if (!m.connectionEvents) continue
      m.mailbox.pushState(env)
      n++
    }
    return n
  }

  /** Send to the cloud through the `upstream` function; its rejection is passed on (as an Error). */
  async sendUpstream (env: Envelope): Promise<void> {
    if (this.#closed) throw new ModuleBusError('closed', 'module bus is closed')
    try {
      await this.#upstream(env)
      this.#upstreamSent++
    } catch (err) {
      this.#upstreamFailed++
      throw toError(err)
    }
  }

  stats (): BusStats {
    return {
      modules: this.#modules.stats(),
      pendingRequests: this.#pending.size,
      dispatched: this.#dispatched,
      upstreamSent: this.#upstreamSent,
      upstreamFailed: this.#upstreamFailed,
      unrouted: { ...this.#unrouted }
    }
  }

  /** Unregister every module and reject every pending request with ModuleBusError('closed'). Idempotent. */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    for (const name of this.#modules.names()) this.unregister(name)
    this.#pending.rejectAll(id => new ModuleBusError('closed', `module bus closed with request ${id} pending`))
  }

  // ---- internals ------------------------------------------------------------

  async #fanOut (members: Module[], env: Envelope): Promise<{ modules: string[], failed: DeliveryFailure[] }> {
    const size = this.#sizeOf(env)
    const results = await Promise.allSettled(members.map(m => m.mailbox.offer(env, size)))
    const modules: string[] = []
    const failed: DeliveryFailure[] = []
    results.forEach((r, i) => {
      const name = (members[i] as Module).handle.name
      if (r.status === 'fulfilled') modules.push(name)
      else failed.push({ module: name, error: asBusError(r.reason) })
    })
    return { modules, failed }
  }

  #send (from: string, name: string, env: Envelope): Promise<void> {
    if (this.#closed) return Promise.reject(new ModuleBusError('closed', 'module bus is closed'))
    const m = this.#modules.get(name)
    if (m === undefined) return Promise.reject(new ModuleBusError('no-module', `no module named "${name}"`))
    this.#origin.set(env, { kind: 'local', module: from })
    return m.mailbox.offer(env, this.#sizeOf(env))
  }

  async #sendToGroup (from: string, group: string, env: Envelope): Promise<void> {
    if (this.#closed) throw new ModuleBusError('closed', 'module bus is closed')
    const members = this.#modules.members(group)
    if (members.length === 0) throw new ModuleBusError('no-module', `no module in group "${group}"`)
    this.#origin.set(env, { kind: 'local', module: from })
    const { failed } = await this.#fanOut(members, env)
    if (failed.length > 0) throw (failed[0] as DeliveryFailure).error
  }

  #request (from: string, target: RequestTarget | null, env: Envelope, opts: RequestOptions | undefined): Promise<Envelope> {
    if (this.#closed) return Promise.reject(new ModuleBusError('closed', 'module bus is closed'))
    let timeoutMs: number
    try {
      timeoutMs = intOption('timeoutMs', opts?.timeoutMs, this.#defaultTimeoutMs, 1)
    } catch (err) {
      return Promise.reject(err)
    }
    const id = env.header.id
    let entry: ReturnType<PendingRequests['add']>
    try {
      entry = this.#pending.add(id, from, typeof target === 'string', timeoutMs)
    } catch (err) {
      return Promise.reject(err)
    }
    env.header.sync = true
    const fail = entry.fail
    if (target === null) {
      this.sendUpstream(env).catch(fail)
    } else if (typeof target === 'string') {
      this.#send(from, target, env).catch(fail)
    } else {
      const members = this.#modules.members(target.group)
      if (members.length === 0) {
        fail(new ModuleBusError('no-module', `no module in group "${target.group}"`))
      } else {
        this.#origin.set(env, { kind: 'local', module: from })
        // A group request fails only when no member took it.
        this.#fanOut(members, env).then(({ modules, failed }) => {
          if (modules.length === 0) fail((failed[0] as DeliveryFailure).error)
        }, fail)
      }
    }
    return entry.promise
  }

  async #respond (from: string, request: Envelope, content: unknown, error: ErrorReply | undefined): Promise<void> {
    let resp: Envelope
    if (error === undefined) {
      resp = newResponse(request, content, from)
    } else {
      const e = newErrorResponse(request, error.code, error.message, from)
      if (error.details !== undefined) e.content = { ...error.details, code: error.code, message: error.message }
      resp = e
    }
    this.#responded.add(request)
    const id = request.header.id
    const origin = this.#origin.get(request)
    if (origin?.kind !== 'cloud') {
      if (this.#pending.resolve(id, resp)) return
      if (this.#pending.finished(id)) { this.#unroutedDrop(request.router.source, resp, 'late-response'); return }
    }
    if (origin?.kind === 'cloud' || (origin === undefined && request.router.source.startsWith('cloud'))) {
      await this.sendUpstream(resp)
      return
    }
    const to = origin?.kind === 'local' && origin.module !== undefined ? origin.module : request.router.source
    await this.#send(from, to, resp)
  }

  #unroutedDrop (target: string, env: Envelope, reason: DropReason): void {
    this.#unrouted[reason] = (this.#unrouted[reason] ?? 0) + 1
    this.#dropped(target, env, reason)
  }

  /** Every message that does not reach a consumer ends here: counted, logged, and answered where someone waits. */
  #dropped (module: string, env: Envelope, reason: DropReason): void {
    try {
      this.#onDrop?.(module, reason)
    } catch (err) {
      this.#logger.warn({ err }, 'onDrop hook threw')
    }
    const fields = { module, id: env.header.id, group: env.router.group, operation: env.router.operation, reason }
    // Refusals are already reported to their sender; expiry, late responses and superseded events are routine.
    if (reason === 'drop-oldest' || reason === 'closed' || reason === 'no-module') this.#logger.warn(fields, 'module bus dropped a message')
    else this.#logger.debug(fields, 'module bus dropped a message')
    if (reason !== 'drop-oldest' && reason !== 'closed') return
    // Someone may be waiting for an answer to the dropped message: tell them now rather than at their timeout.
    const id = env.header.id
    if (this.#pending.has(id)) {
      const err = reason === 'drop-oldest'
        ? new MailboxFullError(module, 'dropped', `request ${id} was evicted (drop-oldest) before module "${module}" consumed it`)
        : new ModuleBusError('closed', `module "${module}" closed with request ${id} queued`)
      this.#pending.reject(id, err, true)
      return
    }
    const op = env.router.operation
    if (this.#origin.get(env)?.kind === 'cloud' && env.header.sync === true && op !== 'response' && op !== 'error' && !this.#closed) {
      const resp = reason === 'drop-oldest'
        ? newErrorResponse(env, MailboxFullError.code, `evicted from the full mailbox of module "${module}" (drop-oldest)`, module)
        : newErrorResponse(env, ModuleBusError.code, `module "${module}" was unregistered before consuming the request`, module)
      this.sendUpstream(resp).catch(err => this.#logger.warn({ module, id, err }, 'could not send error response upstream'))
    }
  }
}

function asBusError (err: unknown): EdgeFabricError {
  return err instanceof EdgeFabricError ? err : new ModuleBusError('closed', toError(err).message, { cause: err })
}

export { ModuleHandle, type ErrorReply } from './bus-handle.js'
export { estimateEnvelopeBytes } from './bus-size.js'
export * from './bus-types.js'
