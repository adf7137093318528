/**
 * The edge's link to the hub (EdgeHub role): dial with the hub identity
 * pinned from the join token, answer the challenge, keep the session alive on
 * inbound traffic, and reconnect with capped exponential backoff and full
 * jitter. A refusal that retrying cannot fix (bad token, key mismatch,
 * unsupported version) stops the connector with a typed error.
 */
import { EventEmitter } from 'node:events'
import type { Clock, TimerHandle } from '../util/clock.js'
import type { Envelope } from '../codec/envelope.js'
import { ConnectionClosedError, EdgeFabricError, ProtocolError, toError } from '../errors.js'
import type { Logger } from '../ops/logger.js'
import { Backoff, Liveness } from '../session/liveness.js'
import {
  CAPABILITIES, PROTOCOL_VERSION, helloContext, rotateContext, parseKeyRotated, type JoinProofContent, isSessionMessage, parseChallenge, parseGoodbye, parsePing,
  parseRefused, parseWelcome, sessionMessage, type WelcomeContent
} from '../session/protocol.js'
import { dial, transportFor } from '../transport/index.js'
import { joinProof } from '../identity/join-proof.js'
import { quicEngineLine } from '../transport/quic-engine.js'
import { nodeKeyId } from '../identity/node-key.js'
import type { Connection, ConnectionOptions } from '../transport/types.js'

/** The hub refused the join; `retryable` says whether retrying can help. */
export class HubRefusedError extends EdgeFabricError {
  static readonly code = 'EF_JOIN_REFUSED'
  readonly refusalCode: string
  readonly retryable: boolean
  constructor (refusalCode: string, reason: string, retryable: boolean) {
    super(HubRefusedError.code, `hub refused the join: ${reason} [${refusalCode}]`)
    this.refusalCode = refusalCode
    this.retryable = retryable
  }
}

/** Consecutive dial failures that look like a scheme/TLS mismatch before the connector gives up. */
const MISMATCH_ATTEMPTS = 3

/**
 * A dial error that retrying cannot fix because the URL's scheme does not
 * match what the port speaks (issue 12): returns the likely fix, or undefined.
 */
export function transportMismatch (url: URL, err: Error): string | undefined {
  const text = `${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`
  const host = url.host
  if (url.protocol === 'ws:' && /socket hang up|Parse Error|Unexpected server response: 400/i.test(text)) {
    return `the hub port ${host} does not speak plain WebSocket (the connection was reset during the upgrade): it most likely speaks wss, not ws — use wss://${host}`
  }
  if (url.protocol === 'wss:' && /before secure TLS connection was established|wrong version number|packet length too long|ERR_SSL_/i.test(text)) {
    return `the hub port ${host} does not speak TLS: it most likely speaks plain ws, not wss — use ws://${host} (with --insecure-transport off loopback), or the hub's wss port`
  }
  if (url.protocol === 'https:' && /ALPN|no application protocol|h3/i.test(text)) {
    return `the hub port ${host} does not speak WebTransport (HTTP/3): check the scheme — quic:// and https:// listen on different ports`
  }
  return undefined
}

export interface EdgeKey {
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array
  sign (nonce: Uint8Array, context: string): Uint8Array
}

export interface ConnectorOptions {
  hubUrls: string[]
  nodeId: string
  /**
   * First-join material from the token (its public payload part and the
   * secret derived from it); the token itself never leaves the edge.
   * Absent: the node must already be bound at the hub.
   */
  join?: { payload: string, secret: Uint8Array }
  /** The node is already bound at this hub: hellos carry no join proof. */
  joined: boolean
  /** Called after the hub welcomed a join proof (persist that the node is bound). */
  onJoined?: (welcome: WelcomeContent) => Promise<void> | void
  key: EdgeKey
  /**
   * A rotated key whose rotation may have reached the hub before a crash
   * (`identity/edge.key.next`): tried when the hub refuses `key` with
   * EF_NODE_KEY_MISMATCH; `onNextKeyUsed` then makes it the key for good.
   */
  nextKey?: EdgeKey
  onNextKeyUsed?: () => Promise<void> | void
  /** Pins from the join token: expected hub identity per transport family. */
  pins: { quic?: string, tls?: string }
  labels?: Record<string, string>
  /** Capabilities stated in hello. @default CAPABILITIES */
  capabilities?: readonly string[]
  clock: Clock
  logger: Logger
  handshakeTimeoutMs: number
  dialTimeoutMs: number
  backoff: Backoff
  connection: ConnectionOptions
}

export type ConnectorState = 'connecting' | 'connected' | 'waiting' | 'stopped' | 'failed'

interface ConnectorEvents {
  message: [Envelope]
  connected: [{ url: string, welcome: WelcomeContent, connection: Connection }]
  disconnected: [{ reason: string, clean: boolean }]
  failed: [HubRefusedError]
  error: [Error]
}

export class EdgeConnector extends EventEmitter<ConnectorEvents> {
  readonly #o: ConnectorOptions
  #state: ConnectorState = 'waiting'
  #conn: Connection | undefined
  #liveness: Liveness | undefined
  #retryTimer: TimerHandle | undefined
  #urlIndex = 0
  #dialAbort: AbortController | undefined
  #engineLogged = false
  #connectedAt = 0
  #heartbeatMs = 5000
  #joined: boolean
  #mismatches = 0
  #key: EdgeKey
  #nextKey: EdgeKey | undefined
  #session: { hub: string, nonce: Uint8Array } | undefined
  #rotation: { resolve: (keyId: string) => void, reject: (err: Error) => void } | undefined
  rttMs: number | undefined
  lastError: Error | undefined

  constructor (options: ConnectorOptions) {
    super()
    this.on('error', () => {})
    this.#o = options
    this.#joined = options.joined
    this.#key = options.key
    this.#nextKey = options.nextKey
  }

  /**
   * Rotate the node key in session (protocol 2 `rotate-key`): the new key
   * signs the session nonce, the current key co-signs; once the hub confirms,
   * the new key is used for every later handshake. Rejects with
   * HubRefusedError when the hub refuses, ConnectionClosedError when not
   * connected or the link drops first.
   */
  async rotateKey (next: EdgeKey, timeoutMs = 10_000): Promise<string> {
    const conn = this.connection
    const session = this.#session
    if (conn === undefined || session === undefined) throw new ConnectionClosedError('not connected to the hub')
    if (this.#rotation !== undefined) throw new EdgeFabricError('EF_BUSY', 'a key rotation is already in progress')
    const ctx = rotateContext(this.#o.nodeId, session.hub, nodeKeyId(next.publicKey))
    const result = new Promise<string>((resolve, reject) => { this.#rotation = { resolve, reject } })
    const timer = this.#o.clock.setTimeout(() => this.#settleRotation(new EdgeFabricError('EF_TIMEOUT', `no answer to the key rotation within ${timeoutMs} ms`)), timeoutMs)
    conn.send(sessionMessage('rotate-key', { key: next.publicKey, sig: next.sign(session.nonce, ctx), oldSig: this.#key.sign(session.nonce, ctx) }, this.#o.nodeId), { channel: 'control' })
    try {
      const keyId = await result
      this.#key = next
      return keyId
    } finally {
      this.#o.clock.clearTimeout(timer)
    }
  }

  #settleRotation (err: Error | undefined, keyId?: string): void {
    const r = this.#rotation
    this.#rotation = undefined
    if (r === undefined) return
    if (err !== undefined) r.reject(err)
    else r.resolve(keyId as string)
  }

  /** The hub has bound this node's key (a join proof was welcomed, or it was bound before). */
  get joined (): boolean { return this.#joined }

  get state (): ConnectorState { return this.#state }
  get connection (): Connection | undefined { return this.#state === 'connected' ? this.#conn : undefined }

  start (): void {
    if (this.#state !== 'waiting') return
    void this.#connect()
  }

  /** Send to the hub; throws ConnectionClosedError when not connected. false = wait for drain. */
  send (env: Envelope): boolean {
    const c = this.connection
    if (c === undefined) throw new ConnectionClosedError('not connected to the hub')
    return c.send(env)
  }

  async close (): Promise<void> {
    if (this.#state === 'stopped') return
    this.#state = 'stopped'
    this.#o.clock.clearTimeout(this.#retryTimer)
    this.#dialAbort?.abort()
    this.#liveness?.stop()
    const c = this.#conn
    if (c !== undefined) {
      try { c.send(sessionMessage('goodbye', { reason: 'edge shutting down' }, this.#o.nodeId), { channel: 'control' }) } catch {}
      await c.close('edge shutting down')
    }
  }

  #stopped (): boolean { return this.#state === 'stopped' }

  #pinFor (url: URL): string | undefined {
    const scheme = url.protocol.replace(/:$/, '')
    if (scheme === 'quic' || scheme === 'memory') return this.#o.pins.quic
    if (scheme === 'wss' || scheme === 'https' || scheme === 'webtransport') return this.#o.pins.tls
    return undefined
  }

  async #connect (): Promise<void> {
    if (this.#state === 'stopped') return
    this.#state = 'connecting'
    const urls = this.#o.hubUrls
    const url = new URL(urls[this.#urlIndex % urls.length] as string)
    const pin = this.#pinFor(url)
    if (pin === undefined && url.protocol === 'ws:') {
      this.#o.logger.warn({ url: url.href }, 'plain ws:// hub URL: the hub is not authenticated and traffic is not encrypted')
    }
    if (url.protocol === 'quic:' && !this.#engineLogged) {
      // Say once which QUIC engine carries quic:// (issue 18).
      this.#engineLogged = true
      const href = url.href
      void transportFor(url).then(quicEngineLine).then(line => {
        if (line !== undefined) this.#o.logger.info({ url: href }, line)
      }, () => {})
    }
    this.#dialAbort = new AbortController()
    let conn: Connection
    try {
      conn = await dial(url, {
        ...this.#o.connection,
        timeoutMs: this.#o.dialTimeoutMs,
        signal: this.#dialAbort.signal,
        ...(pin !== undefined ? { expectedRemoteIdentity: pin } : {})
      })
    } catch (err) {
      const e = toError(err)
      if ((e as { code?: string }).code === 'EF_IDENTITY_MISMATCH') {
        // The hub is not the one the join token names: retrying cannot make it so.
        this.#fail(new HubRefusedError('EF_HUB_IDENTITY_MISMATCH', `the hub at ${url.href} is not the hub this join token was issued by (${e.message})`, false))
        return
      }
      const hint = transportMismatch(url, e)
      if (hint !== undefined) {
        // Reported at the first attempt; given up after a few identical ones
        // (a hub shedding load can also reset a connection once).
        this.#mismatches++
        if (this.#mismatches === 1) this.#o.logger.error({ url: url.href, err: e.message }, hint)
        if (this.#mismatches >= MISMATCH_ATTEMPTS) {
          this.#fail(new HubRefusedError('EF_TRANSPORT_MISMATCH', `${hint} (${MISMATCH_ATTEMPTS} attempts: ${e.message})`, false))
          return
        }
      } else {
        this.#mismatches = 0
      }
      this.#retry(e, true)
      return
    }
    this.#mismatches = 0
    if (this.#stopped()) { conn.abort(new ConnectionClosedError('edge stopped')); return }
    this.#conn = conn
    const sendJoin = !this.#joined && this.#o.join !== undefined
    try {
      const welcome = await this.#handshake(conn, sendJoin)
      if (sendJoin) {
        this.#joined = true
        await this.#o.onJoined?.(welcome)
      }
      // close() may have run while the welcome was on its way: 'connected' must not overwrite
      // 'stopped', or the closed connection's 'close' starts a retry loop nothing ever stops
      // (a test process that never exited: test/edge/connector-close-during-handshake.test.ts).
      if (this.#stopped()) { conn.abort(new ConnectionClosedError('edge stopped')); return }
      this.#established(conn, welcome, url.href)
    } catch (err) {
      const e = toError(err)
      conn.abort(e)
      if (e instanceof HubRefusedError && e.refusalCode === 'EF_NODE_KEY_MISMATCH' && this.#nextKey !== undefined) {
        // A rotation reached the hub but not our key file before a restart: the next key is the bound one.
        this.#key = this.#nextKey
        this.#nextKey = undefined
        await Promise.resolve(this.#o.onNextKeyUsed?.()).catch(() => {})
        this.#retry(e, false)
        return
      }
      if (e instanceof HubRefusedError && e.refusalCode === 'EF_NODE_NOT_BOUND' && !sendJoin && this.#o.join !== undefined) {
        // Removed at the hub (or its store was reset) while we held a token:
        // the next attempt presents the join proof.
        this.#joined = false
        this.#retry(e, false)
        return
      }
      if (e instanceof HubRefusedError && !e.retryable) {
        this.#fail(e)
        return
      }
      // A retryable refusal (node limit, cluster unavailable): another listed hub may serve now.
      this.#retry(e, e instanceof HubRefusedError)
    }
  }

  #handshake (conn: Connection, sendJoin: boolean): Promise<WelcomeContent> {
    return new Promise<WelcomeContent>((resolve, reject) => {
      const timer = this.#o.clock.setTimeout(() => finish(new EdgeFabricError('EF_HANDSHAKE_TIMEOUT', `no welcome within ${this.#o.handshakeTimeoutMs} ms`)), this.#o.handshakeTimeoutMs)
      const finish = (err: Error | undefined, welcome?: WelcomeContent): void => {
        this.#o.clock.clearTimeout(timer)
        conn.off('message', onMessage)
        conn.off('close', onClose)
        if (err !== undefined) reject(err)
        else resolve(welcome as WelcomeContent)
      }
      const onClose = (): void => finish(new ConnectionClosedError('hub closed the connection during the handshake'))
      const onMessage = (env: Envelope): void => {
        try {
          if (!isSessionMessage(env)) throw new ProtocolError('data before welcome')
          switch (env.router.operation) {
            case 'challenge': {
              const ch = parseChallenge(env)
              if (!ch.versions.includes(PROTOCOL_VERSION)) {
                throw new HubRefusedError('EF_UNSUPPORTED_VERSION', `hub speaks protocol versions ${ch.versions.join(', ')}, this edge speaks ${PROTOCOL_VERSION}`, false)
              }
              this.#session = { hub: ch.hub, nonce: ch.nonce }
              // Issue 13 item 10: bound to this TLS connection where the transport offers it (wss).
              const channelBinding = conn.channelBinding?.()
              const sig = this.#key.sign(ch.nonce, helloContext(this.#o.nodeId, ch.hub, channelBinding))
              const hello: Record<string, unknown> = {
                version: PROTOCOL_VERSION,
                node: this.#o.nodeId,
                key: this.#key.publicKey,
                sig,
                capabilities: [...(this.#o.capabilities ?? CAPABILITIES)],
                labels: this.#o.labels ?? {},
                ...(channelBinding !== undefined ? { channelBinding } : {})
              }
              const j = this.#o.join
              if (sendJoin && j !== undefined) {
                const proof = joinProof(j.secret, j.payload, { node: this.#o.nodeId, hub: ch.hub, nonce: ch.nonce, key: this.#key.publicKey, ...(channelBinding !== undefined ? { channelBinding } : {}) })
                hello.join = { payload: j.payload, proof } satisfies JoinProofContent
              }
              conn.send(sessionMessage('hello', hello, this.#o.nodeId), { channel: 'control' })
              break
            }
            case 'welcome':
              finish(undefined, parseWelcome(env))
              break
            case 'refused': {
              const r = parseRefused(env)
              finish(new HubRefusedError(r.code, r.reason, r.retryable))
              break
            }
            default:
              throw new ProtocolError(`unexpected ${env.router.operation} during the handshake`)
          }
        } catch (err) {
          finish(toError(err))
        }
      }
      conn.on('message', onMessage)
      conn.once('close', onClose)
    })
  }

  #established (conn: Connection, welcome: WelcomeContent, url: string): void {
    this.#state = 'connected'
    this.#connectedAt = this.#o.clock.now()
    this.#heartbeatMs = welcome.heartbeatMs
    this.lastError = undefined
    let goodbye: string | undefined
    let rttTold: number | undefined
    this.#liveness = new Liveness({
      clock: this.#o.clock,
      heartbeatMs: welcome.heartbeatMs,
      role: 'dialer',
      // Fast detection of a dead hub only pays where there is another hub to go to (a cluster,
      // issue 17 failover); with one hub, a brief outage is better ridden out than redialled.
      ...(this.#o.hubUrls.length > 1 ? {} : { quickProbe: false as const }),
      ping: () => {
        // The RTT rides along when it changed by more than 10 % (or 1 ms) since last told: the hub's
        // only RTT source for an idle node, at no extra packet (PingContent.r).
        const rtt = this.rttMs
        const content: { t: number, r?: number } = { t: this.#o.clock.now() }
        if (rtt !== undefined && (rttTold === undefined || Math.abs(rtt - rttTold) > Math.max(1, rttTold * 0.1))) { content.r = rtt; rttTold = rtt }
        try { conn.send(sessionMessage('ping', content, this.#o.nodeId), { channel: 'control' }) } catch {}
      },
      dead: silent => conn.abort(new EdgeFabricError('EF_LIVENESS', `hub silent for ${silent} ms`))
    })
    conn.on('message', env => {
      this.#liveness?.touch()
      if (!isSessionMessage(env)) {
        this.emit('message', env)
        return
      }
      try {
        switch (env.router.operation) {
          case 'ping':
            conn.send(sessionMessage('pong', { t: parsePing(env).t }, this.#o.nodeId), { channel: 'control' })
            break
          case 'pong':
            this.rttMs = Math.max(0, this.#o.clock.now() - parsePing(env).t)
            break
          case 'goodbye':
            goodbye = parseGoodbye(env).reason
            break
          case 'key-rotated':
            this.#settleRotation(undefined, parseKeyRotated(env).keyId)
            break
          case 'key-rotate-refused': {
            const r = parseRefused({ ...env, content: { retryable: false, ...(env.content as object) } })
            this.#settleRotation(new HubRefusedError(r.code, r.reason, false))
            break
          }
          default:
            throw new ProtocolError(`unexpected session operation "${env.router.operation}"`)
        }
      } catch (err) {
        conn.abort(toError(err))
      }
    })
    conn.once('close', info => {
      this.#settleRotation(new ConnectionClosedError('the hub link closed before the key rotation was confirmed'))
      this.#session = undefined
      this.#liveness?.stop()
      this.#liveness = undefined
      this.#conn = undefined
      const reason = goodbye ?? info.reason ?? info.error?.message ?? (info.clean ? 'closed' : 'connection lost')
      this.emit('disconnected', { reason, clean: info.clean })
      if (this.#state === 'stopped') return
      // A session that lasted resets the backoff; a flapping one keeps growing it.
      if (this.#o.clock.now() - this.#connectedAt >= this.#heartbeatMs) this.#o.backoff.reset()
      // A lost session (hub died, shut down) moves on to the next listed hub URL: in cluster mode
      // any hub serves any node (issue 17). Only "replaced by a newer connection" stays put.
      this.#retry(info.error ?? new ConnectionClosedError(reason), goodbye === undefined || !goodbye.startsWith('replaced'))
    })
    this.#o.logger.info({ url, session: welcome.session }, 'connected to hub')
    this.emit('connected', { url, welcome, connection: conn })
  }

  #fail (e: HubRefusedError): void {
    this.#state = 'failed'
    this.lastError = e
    this.#o.logger.error({ code: e.refusalCode }, e.message)
    this.emit('failed', e)
  }

  #retry (err: Error, dialFailed: boolean): void { // dialFailed: move on to the next hub URL
    if (this.#state === 'stopped' || this.#state === 'failed') return
    this.#state = 'waiting'
    this.lastError = err
    if (dialFailed) this.#urlIndex++ // try the next hub URL after a failed dial or a lost session
    const delay = this.#o.backoff.next()
    this.#o.logger.warn({ err: err.message, code: (err as { code?: string }).code, retryInMs: delay }, 'hub link down; retrying')
    this.#retryTimer = this.#o.clock.setTimeout(() => { void this.#connect() }, delay)
  }
}
