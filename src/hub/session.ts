/**
 * One edge's session on the hub: challenge → hello → welcome, then liveness
 * and dispatch. The node id is fixed at authentication and stamped on every
 * upstream message by the hub; nothing the edge writes later can change it.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import type { Clock, TimerHandle } from '../util/clock.js'
import type { Envelope } from '../codec/envelope.js'
import { EdgeFabricError, ProtocolError, toError } from '../errors.js'
import { Liveness } from '../session/liveness.js'
import {
  CAPABILITIES, PROTOCOL_VERSION, PROTOCOL_VERSIONS, isSessionMessage, parseHello, parsePing, parseRotateKey, sessionMessage,
  type HelloContent, type RefusedContent, type RotateKeyContent
} from '../session/protocol.js'
import type { CloseInfo, Connection } from '../transport/types.js'
import type { HubAuthenticator } from './types.js'

/** What a session needs from its hub. */
export interface SessionHost {
  readonly clock: Clock
  readonly authenticator: HubAuthenticator
  readonly heartbeatMs: number
  readonly handshakeTimeoutMs: number
  readonly logger: { debug: (o: object, m: string) => void, info: (o: object, m: string) => void, warn: (o: object, m: string) => void }
  /** Admit an authenticated session (may throw JoinRefusedError, e.g. node limit). */
  admit (session: HubSession, hello: HelloContent): void
  /** The welcome was sent: the session carries traffic from now on. */
  activated (session: HubSession): void
  refused (session: HubSession, refusal: RefusedContent, nodeId: string | undefined): void
  upstream (session: HubSession, env: Envelope): void
  ended (session: HubSession, info: CloseInfo): void
}

export class HubSession {
  readonly id = randomUUID()
  readonly connection: Connection
  nodeId: string | undefined
  keyId: string | undefined
  labels: Record<string, string> = {}
  capabilities: string[] = []
  state: 'handshaking' | 'active' | 'closed' = 'handshaking'
  rttMs: number | undefined
  readonly #host: SessionHost
  readonly #nonce = randomBytes(32)
  #handshakeTimer: TimerHandle | undefined
  #liveness: Liveness | undefined
  #closeReason: string | undefined
  #helloSeen = false

  constructor (host: SessionHost, connection: Connection) {
    this.#host = host
    this.connection = connection
    connection.on('message', env => this.#onMessage(env))
    connection.once('close', info => this.#onClose(info))
    this.#handshakeTimer = host.clock.setTimeout(() => {
      this.#refuse({ code: 'EF_HANDSHAKE_TIMEOUT', reason: `no hello within ${host.handshakeTimeoutMs} ms`, retryable: true })
    }, host.handshakeTimeoutMs)
    this.#send(sessionMessage('challenge', { nonce: this.#nonce, hub: host.authenticator.hubId, versions: [...PROTOCOL_VERSIONS] }, 'hub'))
  }

  get lastSeen (): number | undefined { return this.#liveness?.lastInbound }

  /** Send an envelope to the edge; false = wait for drain. */
  send (env: Envelope): boolean {
    return this.connection.send(env)
  }

  /** Graceful end with a goodbye the edge can show (e.g. replaced by a newer session). */
  async goodbye (reason: string): Promise<void> {
    if (this.state === 'closed') return
    this.#closeReason = reason
    this.#send(sessionMessage('goodbye', { reason }, 'hub'))
    await this.connection.close(reason)
  }

  abort (err: Error): void {
    this.connection.abort(err)
  }

  #send (env: Envelope): void {
    try {
      this.connection.send(env, { channel: 'control' })
    } catch {
      // connection already closing; its close event ends the session
    }
  }

  #onMessage (env: Envelope): void {
    this.#liveness?.touch()
    if (this.state === 'handshaking') {
      if (this.#helloSeen) {
        this.#refuse({ code: ProtocolError.code, reason: 'message before welcome', retryable: false })
        return
      }
      this.#helloSeen = true
      void this.#onHello(env)
      return
    }
    if (this.state !== 'active') return
    if (!isSessionMessage(env)) {
      this.#host.upstream(this, env)
      return
    }
    try {
      switch (env.router.operation) {
        case 'ping': {
          const p = parsePing(env)
          this.#send(sessionMessage('pong', { t: p.t }, 'hub'))
          if (p.r !== undefined) this.rttMs = p.r // the edge's measurement (PingContent.r)
          break
        }
        case 'pong':
          this.rttMs = Math.max(0, this.#host.clock.now() - parsePing(env).t)
          break
        case 'rotate-key':
          void this.#rotate(parseRotateKey(env))
          break
        case 'goodbye':
          this.#closeReason = 'edge said goodbye'
          void this.connection.close('goodbye')
          break
        default:
          throw new ProtocolError(`unexpected session operation "${env.router.operation}"`)
      }
    } catch (err) {
      this.abort(toError(err))
    }
  }

  /** In-session key rotation (protocol 2); the session continues under the new key id. */
  async #rotate (r: RotateKeyContent): Promise<void> {
    const auth = this.#host.authenticator
    try {
      if (auth.rotate === undefined) throw new EdgeFabricError('EF_UNSUPPORTED', 'this hub\'s authenticator cannot rotate keys')
      const { keyId } = await auth.rotate(this.nodeId as string, this.keyId as string, r, this.#nonce)
      this.keyId = keyId
      this.#host.logger.info({ nodeId: this.nodeId, keyId }, 'node key rotated')
      this.#send(sessionMessage('key-rotated', { keyId }, 'hub'))
    } catch (err) {
      const e = toError(err)
      this.#host.logger.warn({ nodeId: this.nodeId, err: e.message }, 'node key rotation refused')
      this.#send(sessionMessage('key-rotate-refused', { code: e instanceof EdgeFabricError ? e.code : 'EF_INTERNAL', reason: (e as { reason?: string }).reason ?? e.message }, 'hub'))
    }
  }

  async #onHello (env: Envelope): Promise<void> {
    let hello: HelloContent
    try {
      if (!isSessionMessage(env) || env.router.operation !== 'hello') throw new ProtocolError('expected hello')
      hello = parseHello(env)
    } catch (err) {
      this.#refuse({ code: ProtocolError.code, reason: toError(err).message, retryable: false })
      return
    }
    if (!(PROTOCOL_VERSIONS as readonly number[]).includes(hello.version)) {
      this.#refuse({ code: 'EF_UNSUPPORTED_VERSION', reason: `protocol version ${hello.version} is not supported (hub speaks ${PROTOCOL_VERSIONS.join(', ')})`, retryable: false }, hello.node)
      return
    }
    try {
      const { nodeId, keyId } = await this.#host.authenticator.authenticate(hello, this.#nonce, this.connection)
      if (this.connection.status !== 'open') return
      this.nodeId = nodeId
      this.keyId = keyId
      this.labels = { ...hello.labels }
      this.capabilities = hello.capabilities.filter(c => (CAPABILITIES as readonly string[]).includes(c))
      this.#host.admit(this, hello)
    } catch (err) {
      const e = toError(err)
      const code = e instanceof EdgeFabricError ? e.code : 'EF_INTERNAL'
      const retryable = (e as { retryable?: unknown }).retryable === true
      const reason = (e as { reason?: unknown }).reason
      this.#refuse({ code, reason: typeof reason === 'string' ? reason : e.message, retryable }, hello.node)
      return
    }
    this.#host.clock.clearTimeout(this.#handshakeTimer)
    this.state = 'active'
    // Lift the transport's pre-auth bounds (hello-sized frames, accept deadline,
    // unauthenticated slot) BEFORE the welcome: the edge may send full-size
    // frames as soon as it reads it (issue 13 item 1).
    this.connection.markAuthenticated()
    this.#send(sessionMessage('welcome', {
      version: PROTOCOL_VERSION,
      session: this.id,
      heartbeatMs: this.#host.heartbeatMs,
      capabilities: this.capabilities,
      hub: this.#host.authenticator.hubId
    }, 'hub'))
    this.#host.activated(this)
    this.#liveness = new Liveness({
      clock: this.#host.clock,
      heartbeatMs: this.#host.heartbeatMs,
      role: 'acceptor',
      ping: () => this.#send(sessionMessage('ping', { t: this.#host.clock.now() }, 'hub')),
      dead: silent => {
        this.#closeReason = `no traffic for ${silent} ms`
        this.abort(new EdgeFabricError('EF_LIVENESS', `edge ${this.nodeId ?? '?'} silent for ${silent} ms`))
      }
    })
  }

  #refuse (refusal: RefusedContent, nodeId?: string): void {
    if (this.state === 'closed') return
    this.#host.clock.clearTimeout(this.#handshakeTimer)
    this.state = 'closed'
    this.#closeReason = `refused: ${refusal.code}`
    this.#host.refused(this, refusal, nodeId)
    this.#send(sessionMessage('refused', refusal, 'hub'))
    void this.connection.close(`refused: ${refusal.code}`)
  }

  #onClose (info: CloseInfo): void {
    const wasActive = this.state === 'active'
    this.state = 'closed'
    this.#host.clock.clearTimeout(this.#handshakeTimer)
    this.#liveness?.stop()
    if (wasActive && this.nodeId !== undefined) {
      const reason = this.#closeReason ?? info.reason ?? info.error?.message ?? (info.clean ? 'closed' : 'connection lost')
      this.#host.ended(this, { ...info, reason })
    }
  }
}
