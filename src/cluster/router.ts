/**
 * Send, request and broadcast to nodes whose session another hub holds, over
 * core NATS subjects (subjects.ts; README "Cluster mode"):
 *
 *   ef.<c>.node.<node>.send  payload: envelope (stateless wire form), or bare content with
 *                            Ef-* headers from a plain NATS client. Reply (when a reply
 *                            subject is given): empty = handed to the session; header
 *                            Ef-Error = code (e.g. EF_NODE_OFFLINE).
 *   ef.<c>.node.<node>.req   same payload; the reply is the node's response envelope
 *                            (or Ef-Error). A plain client gets the response content as
 *                            JSON when it sent Ef-Content: json.
 *   ef.<c>.broadcast         payload: {selector, envelope}; every hub answers {sent, failed}.
 *
 * The hub holding a session subscribes to its node's two subjects; "no
 * responders" from NATS therefore means no hub holds the node.
 */
import { headers as natsHeaders, type Msg, type Subscription } from '@nats-io/transport-node'
import type { EnvelopeCodec } from '../codec/codec.js'
import { newMessage, type Envelope } from '../codec/envelope.js'
import { EdgeFabricError, toError } from '../errors.js'
import type { ClusterConnection } from './connection.js'
import { H } from './subjects.js'
import type { ClusterHubPort } from './types.js'

export class Router {
  readonly #c: ClusterConnection
  readonly #codec: EnvelopeCodec
  readonly #port: ClusterHubPort
  readonly #hub: string
  readonly #subs = new Map<string, Subscription>()
  #broadcastSub: Subscription | undefined

  constructor (c: ClusterConnection, codec: EnvelopeCodec, port: ClusterHubPort, hub: string) {
    this.#c = c
    this.#codec = codec
    this.#port = port
    this.#hub = hub
  }

  start (): void {
    this.#broadcastSub = this.#c.nc.subscribe(this.#c.names.broadcast, { callback: (err, m) => { if (err === null) void this.#onBroadcast(m) } })
  }

  /** This hub now holds the node's session: serve its subjects. */
  serve (node: string): void {
    if (this.#subs.has(node)) return
    const n = this.#c.names
    const prefix = n.nodeSend(node).slice(0, -'.send'.length)
    const sub = this.#c.nc.subscribe(`${prefix}.*`, {
      callback: (err, m) => {
        if (err !== null) return
        if (m.subject.endsWith('.send')) void this.#onSend(node, m)
        else if (m.subject.endsWith('.req')) void this.#onRequest(node, m)
      }
    })
    this.#subs.set(node, sub)
  }

  unserve (node: string): void {
    this.#subs.get(node)?.unsubscribe()
    this.#subs.delete(node)
  }

  #decode (m: Msg): { env: Envelope, plainJson: boolean } {
    const h = m.headers
    if (h?.get(H.envelope) === '1') return { env: this.#codec.decode(m.data), plainJson: false }
    const json = h?.get(H.content) === 'json' || h?.get('Content-Type') === 'application/json'
    const env = newMessage({
      source: 'nats',
      group: h?.get(H.group) || 'nats',
      operation: h?.get(H.operation) || 'publish',
      resource: h?.get(H.resource) || 'nats/message',
      content: json ? JSON.parse(new TextDecoder().decode(m.data)) as unknown : new Uint8Array(m.data),
      ...(h?.get(H.id) ? { id: h.get(H.id) } : {})
    })
    return { env, plainJson: json }
  }

  #replyError (m: Msg, err: unknown): void {
    if (m.reply === undefined || m.reply === '') return
    const h = natsHeaders()
    const e = toError(err)
    h.set(H.error, e instanceof EdgeFabricError ? e.code : 'EF_ERROR')
    m.respond(new TextEncoder().encode(e.message), { headers: h })
  }

  async #onSend (node: string, m: Msg): Promise<void> {
    try {
      const { env } = this.#decode(m)
      await this.#port.sendLocal(node, env)
      if (m.reply !== undefined && m.reply !== '') m.respond(new Uint8Array(0))
    } catch (err) { this.#replyError(m, err) }
  }

  async #onRequest (node: string, m: Msg): Promise<void> {
    try {
      const { env, plainJson } = this.#decode(m)
      const timeoutMs = Number(m.headers?.get('Ef-Timeout-Ms') || 30_000)
      const res = await this.#port.requestLocal(node, env, Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 30_000)
      if (plainJson) m.respond(new TextEncoder().encode(JSON.stringify(res.content ?? null)))
      else {
        const h = natsHeaders()
        h.set(H.envelope, '1')
        m.respond(this.#codec.encode(res), { headers: h })
      }
    } catch (err) { this.#replyError(m, err) }
  }

  async #onBroadcast (m: Msg): Promise<void> {
    if (m.headers?.get('Ef-Hub') === this.#hub) return // the sender covered its own nodes
    try {
      const { selector, envelope } = JSON.parse(new TextDecoder().decode(m.data)) as { selector: Record<string, string>, envelope: string }
      const env = this.#codec.decode(Buffer.from(envelope, 'base64'))
      const r = await this.#port.broadcastLocal(selector, env)
      m.respond(new TextEncoder().encode(JSON.stringify(r)))
    } catch (err) { this.#replyError(m, err) }
  }

  #errorOf (m: Msg): EdgeFabricError | undefined {
    const code = m.headers?.get(H.error)
    if (code === undefined || code === '') return undefined
    return new EdgeFabricError(code, new TextDecoder().decode(m.data))
  }

  /** Best-effort send through the hub holding the node. false: no hub holds it. */
  async send (node: string, env: Envelope, timeoutMs: number): Promise<boolean> {
    const h = natsHeaders()
    h.set(H.envelope, '1')
    try {
      const r = await this.#c.nc.request(this.#c.names.nodeSend(node), this.#codec.encode(env), { timeout: timeoutMs, headers: h })
      const e = this.#errorOf(r)
      if (e !== undefined) { if (e.code === 'EF_NODE_OFFLINE') return false; throw e }
      return true
    } catch (err) {
      if (isNoResponders(err)) return false
      throw err
    }
  }

  /** Request through the hub holding the node; undefined: no hub holds it. */
  async request (node: string, env: Envelope, timeoutMs: number): Promise<Envelope | undefined> {
    const h = natsHeaders()
    h.set(H.envelope, '1')
    h.set('Ef-Timeout-Ms', String(timeoutMs))
    let r: Msg
    try {
      // A little longer than the remote hub's own deadline, so its timeout error arrives first.
      r = await this.#c.nc.request(this.#c.names.nodeReq(node), this.#codec.encode(env), { timeout: timeoutMs + 1000, headers: h })
    } catch (err) {
      if (isNoResponders(err)) return undefined
      throw err
    }
    const e = this.#errorOf(r)
    if (e !== undefined) { if (e.code === 'EF_NODE_OFFLINE') return undefined; throw e }
    return this.#codec.decode(r.data)
  }

  /** Broadcast through every other hub; collects their answers for up to `maxWaitMs`. */
  async broadcast (selector: Record<string, string>, env: Envelope, maxWaitMs = 1000): Promise<{ sent: string[], failed: string[] }> {
    const sent: string[] = []
    const failed: string[] = []
    const h = natsHeaders()
    h.set('Ef-Hub', this.#hub)
    const payload = JSON.stringify({ selector, envelope: Buffer.from(this.#codec.encode(env)).toString('base64') })
    try {
      const it = await this.#c.nc.requestMany(this.#c.names.broadcast, payload, { strategy: 'stall', stall: 150, maxWait: maxWaitMs, headers: h })
      for await (const m of it) {
        if (this.#errorOf(m) !== undefined) continue
        try {
          const r = JSON.parse(new TextDecoder().decode(m.data)) as { sent: string[], failed: string[] }
          sent.push(...r.sent)
          failed.push(...r.failed)
        } catch { /* a malformed answer counts for nothing */ }
      }
    } catch (err) {
      if (!isNoResponders(err)) throw err
    }
    return { sent, failed }
  }

  stop (): void {
    this.#broadcastSub?.unsubscribe()
    for (const s of this.#subs.values()) s.unsubscribe()
    this.#subs.clear()
  }
}

function isNoResponders (err: unknown): boolean {
  const e = err as { code?: string, message?: string, name?: string }
  return e?.code === '503' || /no responders/i.test(e?.message ?? '') || e?.name === 'NoRespondersError'
}
