/**
 * One peer's ACK lane in both directions: a sender (our durable outbox to the
 * peer) and a receiver (the peer's outbox to us), attached to whichever
 * session is current. On attach both sides state what they have durably
 * received (`resume`), so only the gap is resent — within one round trip of
 * the link coming back (KubeEdge waits for a 5 s reconciler).
 */
import type { Envelope } from '../codec/envelope.js'
import { ProtocolError } from '../errors.js'
import { parseData, parseNack, parseSeqField } from './protocol.js'
import { ReliableReceiver, type ReceiverOptions } from './receiver.js'
import { ReliableSender, type LaneLink, type SenderOptions } from './sender.js'

export interface EndpointOptions extends Omit<SenderOptions, 'peer'> {
  deliver: ReceiverOptions['deliver']
  onCount?: ReceiverOptions['onCount']
  resourceKey?: ReceiverOptions['resourceKey']
}

export class ReliableEndpoint {
  readonly peer: string
  readonly sender: ReliableSender
  readonly receiver: ReliableReceiver
  #link: LaneLink | undefined

  constructor (peer: string, o: EndpointOptions) {
    this.peer = peer
    this.sender = new ReliableSender({ ...o, peer })
    const receiverOptions: ReceiverOptions = {
      peer,
      source: o.source,
      store: o.store,
      clock: o.clock,
      codec: o.codec,
      deliver: o.deliver,
      sendControl: env => {
        try { this.#link?.send(env) } catch { /* session gone: the next resume restates everything */ }
      },
      // A failed inbound commit: only a new session (and its resume from the durable point) may go on.
      onBroken: err => { this.#link?.abort?.(err) }
    }
    if (o.onCount !== undefined) receiverOptions.onCount = o.onCount
    if (o.resourceKey !== undefined) receiverOptions.resourceKey = o.resourceKey
    this.receiver = new ReliableReceiver(receiverOptions)
  }

  get attached (): boolean { return this.#link !== undefined }

  /** A session with the peer is up (after the handshake completed). */
  attach (link: LaneLink): void {
    this.#link = link
    this.sender.attach(link)
    this.receiver.sendResume()
  }

  detach (link?: LaneLink): void {
    if (link !== undefined && link !== this.#link) return
    this.#link = undefined
    this.sender.detach()
  }

  /** A `$reliable` envelope from the peer. Throws ProtocolError on malformed input. */
  handle (env: Envelope): void {
    switch (env.router.operation) {
      case 'resume': this.sender.onResume(parseSeqField(env, 'r')); break
      case 'data': this.receiver.onData(parseData(env)); break
      case 'ack': this.sender.onAck(parseSeqField(env, 'u')); break
      case 'nack': { const n = parseNack(env); this.sender.onNack(n.s, n.c, n.r); break }
      case 'rewind': parseSeqField(env, 'f'); this.receiver.onRewind(); break
      default: throw new ProtocolError(`unknown reliable operation "${env.router.operation}"`)
    }
  }

  close (): void {
    this.detach()
    this.sender.close()
    this.receiver.close()
  }
}
