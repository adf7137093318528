/**
 * ModuleHandle: what register() returns — one module's view of the bus.
 *
 * Consumption: the primary model is pull, `for await (const env of handle)`.
 * Pulling is what frees mailbox space, so a slow consumer pushes back on its
 * senders through the overflow policy instead of growing a queue somewhere.
 * `onMessage(fn)` is a thin adapter over the same iterator that awaits `fn`
 * for each message (one at a time, in order). A mailbox has one consumer at
 * a time: a second iterator or onMessage while one is active throws
 * ModuleBusError('already-consuming'). Breaking out of the loop releases the
 * consumer without unregistering the module; queued messages stay queued.
 */
import type { Envelope } from '../codec/envelope.js'
import { isEdgeFabricError, ModuleBusError, toError } from '../errors.js'
import type { Mailbox } from './bus-mailbox.js'
import type { BusLogger, RequestOptions, RequestTarget } from './bus-types.js'

/** The bus operations a handle needs; closures created by ModuleBus.register(). */
export interface ErrorReply {
  code: string
  message: string
  /** Extra fields merged into the error content (never overriding code/message). */
  details?: Record<string, unknown>
}

export interface HandleOps {
  send (from: string, moduleName: string, env: Envelope): Promise<void>
  sendToGroup (from: string, group: string, env: Envelope): Promise<void>
  sendUpstream (env: Envelope): Promise<void>
  request (from: string, target: RequestTarget | null, env: Envelope, opts: RequestOptions | undefined): Promise<Envelope>
  respond (from: string, request: Envelope, content: unknown, error: ErrorReply | undefined): Promise<void>
  responded (request: Envelope): boolean
  unregister (name: string): void
  logger: BusLogger
}

export class ModuleHandle implements AsyncIterable<Envelope> {
  readonly name: string
  readonly group: string
  readonly #mailbox: Mailbox
  readonly #ops: HandleOps
  #consuming = false
  handlerErrors = 0

  /** @internal created by ModuleBus.register() */
  constructor (name: string, group: string, mailbox: Mailbox, ops: HandleOps) {
    this.name = name
    this.group = group
    this.#mailbox = mailbox
    this.#ops = ops
  }

  /** True once unregistered (or the bus closed). */
  get closed (): boolean { return this.#mailbox.closed }
  /** Messages waiting in this module's mailbox. */
  get depth (): number { return this.#mailbox.depth }

  [Symbol.asyncIterator] (): AsyncIterator<Envelope> {
    this.#acquire()
    let done = false
    const finish = (): IteratorResult<Envelope> => {
      if (!done) { done = true; this.#consuming = false }
      return { done: true, value: undefined }
    }
    return {
      next: async () => {
        if (done) return { done: true, value: undefined }
        const env = await this.#mailbox.next()
        return env === undefined ? finish() : { done: false, value: env }
      },
      return: async () => finish()
    }
  }

  /**
   * Push-style adapter: calls `fn` for each message, one at a time. A throw or
   * rejection is logged and counted; if the message was a request nobody
   * answered yet, an error response (the error's code, else EF_HANDLER) goes
   * back so the requester does not wait for its timeout. Returns `stop()`,
   * which resolves once the loop has exited (after the message in progress).
   */
  onMessage (fn: (env: Envelope) => unknown): () => Promise<void> {
    this.#acquire()
    let stopped = false
    const loop = async (): Promise<void> => {
      try {
        while (!stopped) {
          const env = await this.#mailbox.next()
          if (env === undefined) break
          try {
            await fn(env)
          } catch (err) {
            this.#handlerFailed(env, err)
          }
        }
      } finally {
        this.#consuming = false
      }
    }
    const running = loop().catch(err => this.#ops.logger.warn({ module: this.name, err }, 'module consumer loop failed'))
    return async () => {
      if (!stopped) {
        stopped = true
        this.#mailbox.cancelNext()
      }
      await running
    }
  }

  /** Send to one module by name. Resolves when its mailbox accepted the message (backpressure per its policy). */
  send (moduleName: string, env: Envelope): Promise<void> {
    return this.#ops.send(this.name, moduleName, env)
  }

  /**
   * Send to every module of `group` (Beehive SendToGroup; all members get the
   * same envelope object — treat received envelopes as read-only). Resolves
   * when every member accepted; if some refused, rejects with the first
   * refusal after all settled (the others did get it).
   */
  sendToGroup (group: string, env: Envelope): Promise<void> {
    return this.#ops.sendToGroup(this.name, group, env)
  }

  /** Send to the cloud through the bus's upstream function. */
  sendUpstream (env: Envelope): Promise<void> {
    return this.#ops.sendUpstream(env)
  }

  /**
   * Send `env` (header.sync is set) and wait for the response whose
   * header.parentId is env.header.id. Resolves with the response envelope —
   * operation 'response' or 'error' (check it); rejects with
   * RequestTimeoutError, MailboxFullError (refused, or evicted by drop-oldest
   * before consumption) or ModuleBusError. For a group, the first response wins.
   */
  request (target: RequestTarget, env: Envelope, opts?: RequestOptions): Promise<Envelope> {
    return this.#ops.request(this.name, target, env, opts)
  }

  /** Like request(), to the cloud; the response arrives through ModuleBus.dispatch(). */
  requestUpstream (env: Envelope, opts?: RequestOptions): Promise<Envelope> {
    return this.#ops.request(this.name, null, env, opts)
  }

  /**
   * Answer `request` (newResponse: parentId = request id, source = this module).
   * A request that came from the cloud is answered upstream; one from a local
   * module goes back to that module.
   */
  respond (request: Envelope, content: unknown): Promise<void> {
    return this.#ops.respond(this.name, request, content, undefined)
  }

  /**
   * Answer `request` with an error response (operation 'error', content
   * {code, message, ...details}), routed like respond().
   */
  respondError (request: Envelope, code: string, message: string, details?: Record<string, unknown>): Promise<void> {
    return this.#ops.respond(this.name, request, undefined, details === undefined ? { code, message } : { code, message, details })
  }

  /** Remove this module from the bus (same as bus.unregister(name)). */
  unregister (): void {
    this.#ops.unregister(this.name)
  }

  #acquire (): void {
    if (this.#consuming) throw new ModuleBusError('already-consuming', `module "${this.name}" already has a consumer`)
    this.#consuming = true
  }

  #handlerFailed (env: Envelope, err: unknown): void {
    this.handlerErrors++
    const e = toError(err)
    this.#ops.logger.warn({ module: this.name, id: env.header.id, err: e }, 'module message handler failed')
    const op = env.router.operation
    if (env.header.sync === true && op !== 'response' && op !== 'error' && !this.#ops.responded(env)) {
      const code = isEdgeFabricError(e) ? e.code : 'EF_HANDLER'
      this.respondError(env, code, e.message).catch(respErr => {
        this.#ops.logger.warn({ module: this.name, id: env.header.id, err: respErr }, 'could not send error response')
      })
    }
  }
}
