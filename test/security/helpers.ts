/**
 * Attack helpers for test/security: clients built from the transport layer and
 * raw sockets, NOT the library's EdgeNode, so a test can do what a hostile peer
 * does (answer out of turn, stall, send oversize frames).
 *
 * `rawJoin` speaks today's session protocol by hand (challenge → hello signed
 * with a fresh node key → welcome). If the hello changes (issue 13 item 10:
 * proof of token possession instead of the token itself), change it here.
 */
import { edgeJoinSecret, joinProof, tokenPayloadPart } from '../../src/identity/join-proof.js'
import { generateKeyPairSync } from 'node:crypto'
import type { Envelope } from '../../src/codec/envelope.js'
import { rawPublicKey, signChallenge } from '../../src/identity/node-key.js'
import { decodeJoinToken } from '../../src/identity/token.js'
import {
  CAPABILITIES, PROTOCOL_VERSION, helloContext, isSessionMessage, parseChallenge, parseRefused, parseWelcome, sessionMessage,
  type WelcomeContent
} from '../../src/session/protocol.js'
import { dial } from '../../src/transport/index.js'
import type { Connection } from '../../src/transport/types.js'

export interface RawSession { conn: Connection, welcome: WelcomeContent }

/**
 * Dial `url` with the pins of `token`, answer the challenge by hand, resolve at welcome.
 * `binding`: the channel binding signed into the hello — this connection's own (default), or
 * other bytes (what a relay forwarding another leg's hello presents).
 */
export async function rawJoin (url: string, nodeId: string, token: string, timeoutMs = 10_000, binding?: Uint8Array): Promise<RawSession> {
  const pins = decodeJoinToken(token).pins
  const scheme = new URL(url).protocol
  const pin = scheme === 'quic:' || scheme === 'memory:' ? pins.quic : scheme === 'ws:' ? undefined : pins.tls
  const conn = await dial(url, { timeoutMs, ...(pin !== undefined ? { expectedRemoteIdentity: pin } : {}) })
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const welcome = await new Promise<WelcomeContent>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('no welcome in time')) }, timeoutMs)
    const done = (err: Error | undefined, w?: WelcomeContent): void => {
      clearTimeout(timer)
      conn.off('message', onMessage)
      if (err !== undefined) reject(err); else resolve(w as WelcomeContent)
    }
    const onMessage = (env: Envelope): void => {
      if (!isSessionMessage(env)) return
      if (env.router.operation === 'challenge') {
        const ch = parseChallenge(env)
        // Protocol 2 (issue 13 item 10): the token never crosses the wire, a proof of it does.
        const key = rawPublicKey(publicKey)
        const payload = tokenPayloadPart(token)
        // Over wss the hello is bound to this TLS connection (issue 13 item 10).
        const channelBinding = binding ?? conn.channelBinding?.()
        const cb = channelBinding !== undefined ? { channelBinding } : {}
        conn.send(sessionMessage('hello', {
          version: PROTOCOL_VERSION,
          node: nodeId,
          join: { payload, proof: joinProof(edgeJoinSecret(token), payload, { node: nodeId, hub: ch.hub, nonce: ch.nonce, key, ...cb }) },
          key,
          ...cb,
          sig: signChallenge({ privateKey }, ch.nonce, helloContext(nodeId, ch.hub, channelBinding)),
          capabilities: [...CAPABILITIES],
          labels: {}
        }, nodeId), { channel: 'control' })
      } else if (env.router.operation === 'welcome') {
        done(undefined, parseWelcome(env))
      } else if (env.router.operation === 'refused') {
        done(new Error(`refused: ${parseRefused(env).code}`))
      }
    }
    conn.on('message', onMessage)
    conn.once('close', () => done(new Error('closed during the handshake')))
  })
  return { conn, welcome }
}

/** Resolve with the value of a counter series in a prom-client registry (0 when absent). */
export async function counterValue (registry: { getSingleMetric: (n: string) => unknown }, name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name) as { get: () => Promise<{ values: Array<{ value: number, labels: Record<string, unknown> }> }> } | undefined
  if (m === undefined) return 0
  const { values } = await m.get()
  let sum = 0
  for (const v of values) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) sum += v.value
  }
  return sum
}

/** Poll `cond` every 20 ms until it holds or `ms` pass. */
export async function until (cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (await cond()) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
