/**
 * The default hub authenticator (DESIGN.md §9): the hello must carry a join
 * token signed by this hub for the node it names, and prove possession of the
 * node key by signing the hub's fresh nonce (bound to node and hub by the
 * signing context, so it cannot be replayed elsewhere). The first join binds
 * the node name to that key; afterwards only the same key is admitted.
 */
import type { Clock } from '../util/clock.js'
import { JoinRefusedError } from '../errors.js'
import { nodeKeyId, verifyChallenge } from '../identity/node-key.js'
import { helloContext, type HelloContent } from '../session/protocol.js'
import { checkOrBind, type NodeBindingStore } from './bindings.js'
import type { HubIdentity } from './identity.js'
import { verifyJoinToken } from '../identity/token.js'
import type { HubAuthenticator } from './types.js'

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

  async authenticate (hello: HelloContent, nonce: Uint8Array): Promise<{ nodeId: string, keyId: string }> {
    const payload = verifyJoinToken(hello.token, this.#identity.tokenPublicKey, { now: this.#clock.now(), nodeId: hello.node })
    if (hello.key.byteLength !== 32 || !verifyChallenge(hello.key, nonce, helloContext(payload.node, this.hubId), hello.sig)) {
      throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${payload.node} did not prove possession of its key`)
    }
    const keyId = nodeKeyId(hello.key)
    await checkOrBind(this.#bindings, payload.node, keyId, hello.key, this.#clock.now())
    return { nodeId: payload.node, keyId }
  }
}
