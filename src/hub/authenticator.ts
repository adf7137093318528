/**
 * The default hub authenticator (DESIGN.md §9, issue 12/13):
 *
 * 1. every hello proves possession of the node key by signing the hub's
 *    fresh nonce (bound to node and hub by the signing context, so it cannot
 *    be replayed elsewhere);
 * 2. a name already bound admits exactly its bound key — no token is needed
 *    or looked at, so an expired, used or revoked token never strands a bound
 *    edge; another key is refused (EF_TOKEN_USED when it replays the token
 *    that bound the name, EF_NODE_KEY_MISMATCH otherwise);
 * 3. an unbound name needs a join proof (src/identity/join-proof.ts): the
 *    token's public payload plus an HMAC over this handshake keyed by a secret
 *    only the token holder and this hub can derive. The token itself never
 *    crosses the wire. The first join binds the name to the key and records
 *    the token's use (single use unless created reusable).
 *
 * Over wss the hello signature and the join proof also cover the TLS exporter
 * of the connection (channelBindingOf below; issue 13 item 10).
 */
import type { Clock } from '../util/clock.js'
import { JoinRefusedError } from '../errors.js'
import { nodeKeyId, verifyChallenge } from '../identity/node-key.js'
import { hubJoinSecret, verifyJoinProof } from '../identity/join-proof.js'
import { tokenAdmits, validateNodeName } from '../identity/token.js'
import { helloContext, rotateContext, type HelloContent, type RotateKeyContent } from '../session/protocol.js'
import { checkOrBind, type NodeBindingStore } from './bindings.js'
import type { HubIdentity } from './identity.js'
import type { HubAuthenticator } from './types.js'
import type { Connection } from '../transport/types.js'

/**
 * The channel binding a hello is verified under (issue 13 item 10). Where this end of the
 * connection has one (wss: the TLS exporter), the hello must carry the same value: a relay that
 * terminates the edge's TLS and opens its own to the hub forwards a hello made for the other
 * leg, refused here (wss; quic on the native engine). Where it has none (ws, quic on the libp2p
 * engine, a TLS-terminating proxy the operator put in front of the hub), the edge's own value,
 * covered by its signature, is used as given.
 */
export function channelBindingOf (hello: HelloContent, connection: Pick<Connection, 'channelBinding' | 'transport'> | undefined): Uint8Array | undefined {
  const mine = connection?.channelBinding?.()
  if (mine === undefined) return hello.channelBinding
  // quic:// edges on the libp2p fallback engine (platforms without the native one) cannot export
  // the TLS secret: their hello has no binding, and is taken as before (hub pinned by the edge).
  // A relay cannot strip a binding the edge sent: the hello signature covers it.
  if (hello.channelBinding === undefined && connection?.transport === 'quic') return undefined
  if (hello.channelBinding === undefined || !Buffer.from(mine).equals(hello.channelBinding)) {
    throw new JoinRefusedError('EF_CHANNEL_BINDING_MISMATCH', 'the hello was made for another TLS connection (a relay between the edge and the hub?)')
  }
  return mine
}

export class TokenAuthenticator implements HubAuthenticator {
  readonly hubId: string
  readonly #identity: HubIdentity
  readonly #bindings: NodeBindingStore
  readonly #clock: Clock

  constructor (identity: HubIdentity, bindings: NodeBindingStore, clock: Clock) {
    this.#identity = identity
    this.#bindings = bindings
    this.#clock = clock
    this.hubId = identity.quicPeerId
  }

  async authenticate (hello: HelloContent, nonce: Uint8Array, connection?: Pick<Connection, 'channelBinding' | 'transport'>): Promise<{ nodeId: string, keyId: string }> {
    const node = validateNodeName(hello.node)
    const binding = channelBindingOf(hello, connection)
    if (hello.key.byteLength !== 32 || !verifyChallenge(hello.key, nonce, helloContext(node, this.hubId, binding), hello.sig)) {
      throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${node} did not prove possession of its key`)
    }
    const keyId = nodeKeyId(hello.key)
    const bound = await this.#bindings.get(node)
    if (bound !== undefined && bound.keyId === keyId && Buffer.from(bound.publicKey).equals(hello.key)) {
      return { nodeId: node, keyId }
    }
    const join = hello.join
    if (join === undefined) {
      if (bound !== undefined) throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node name ${node} is already bound to another key`)
      throw new JoinRefusedError('EF_NODE_NOT_BOUND', `node ${node} is not known to this hub (never joined, or removed by an operator); its first join needs a join token`)
    }
    const { payload, secret } = hubJoinSecret(join.payload, this.#identity.tokenSigningKey)
    if (!verifyJoinProof(secret, join.payload, { node, hub: this.hubId, nonce, key: hello.key, ...(binding !== undefined ? { channelBinding: binding } : {}) }, join.proof)) {
      throw new JoinRefusedError('EF_TOKEN_INVALID', 'the join token is invalid: its proof does not verify (not issued by this hub, altered, or made for another handshake)')
    }
    const now = this.#clock.now()
    if (Math.floor(now / 1000) >= payload.exp) {
      throw new JoinRefusedError('EF_TOKEN_EXPIRED', `the join token expired at ${new Date(payload.exp * 1000).toISOString()}; create a new one with "edgefabric token create --node ${node}"`)
    }
    if (!tokenAdmits(payload, node)) {
      throw new JoinRefusedError('EF_NODE_MISMATCH', `the join token was issued for node "${payload.node}", not "${node}"`)
    }
    await checkOrBind(this.#bindings, node, keyId, hello.key, now, { jti: payload.jti, node: payload.node, exp: payload.exp, reusable: payload.reuse === true })
    return { nodeId: node, keyId }
  }

  /**
   * Key rotation: the new key signs the session nonce (possession), and the
   * old, bound key signs the same bytes (consent of the retiring key), both
   * under a context naming node, hub and the new key id. Then the binding
   * moves to the new key; the old one no longer authenticates.
   */
  async rotate (nodeId: string, oldKeyId: string, r: RotateKeyContent, nonce: Uint8Array): Promise<{ keyId: string }> {
    const bound = await this.#bindings.get(nodeId)
    if (bound === undefined || bound.keyId !== oldKeyId) throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${nodeId} is no longer bound to the key of this session`)
    if (r.key.byteLength !== 32) throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', 'the new key must be 32 raw Ed25519 bytes')
    const keyId = nodeKeyId(r.key)
    const ctx = rotateContext(nodeId, this.hubId, keyId)
    if (!verifyChallenge(r.key, nonce, ctx, r.sig)) throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', 'the new key did not prove possession')
    if (!verifyChallenge(bound.publicKey, nonce, ctx, r.oldSig)) throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', 'the bound key did not sign the rotation')
    await this.#bindings.rotate(nodeId, oldKeyId, keyId, r.key, this.#clock.now())
    return { keyId }
  }
}
