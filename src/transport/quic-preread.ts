/**
 * Reading a quic:// stream while the connection is still being set up, under
 * pre-auth bounds (issue 13 item 1).
 *
 * The listener builds a connection only once the dialer opened all four
 * channel streams. Until then, bytes a peer sends on the streams it did open
 * would sit in quinn's receive buffers, unread, up to the stream window
 * (2 MiB) each — a peer that opens three streams and never the fourth could
 * park 6 MiB per connection until the deadline. So during setup each stream
 * is read on, every chunk goes through the pre-auth FrameDecoder (a header
 * above the hello limit ends the setup at once), data channels must stay
 * silent, and at most one frame (the hello) may wait on control.
 *
 * When setup completes, the read in flight (if any) is handed to the
 * connection through `read()`, so no byte is lost or read twice.
 */
import { ProtocolError } from '../errors.js'
import type { FrameDecoder } from './framing.js'
import type { NativeStream } from './quic-native.js'
import { IO_CHUNK } from './quic-wire.js'
import { decoderError } from './quic-connection.js'
import type { Channel } from './types.js'

export class PrereadStream implements NativeStream {
  readonly #inner: NativeStream
  #inflight: Promise<Uint8Array | null> | undefined
  #handedOver = false

  constructor (inner: NativeStream) { this.#inner = inner }

  /**
   * Read and check until `handOver()`. Frames go to `frames`; a violation
   * rejects (the caller aborts the connection). `maxFrameSize` is the
   * envelope limit the decoder's limit was derived from (for error messages).
   */
  async pump (channel: Channel, decoder: FrameDecoder, frames: Uint8Array[], maxFrameSize: number): Promise<void> {
    while (!this.#handedOver) {
      const p = this.#inner.read(IO_CHUNK)
      this.#inflight = p
      const chunk = await p
      if (this.#handedOver) return // the connection owns this chunk (it got the same promise)
      this.#inflight = undefined
      if (chunk === null) throw new ProtocolError(`the ${channel} stream ended during setup`)
      let got: Uint8Array[]
      try {
        got = decoder.push(chunk)
      } catch (err) {
        throw decoderError(err, maxFrameSize)
      }
      if (got.length === 0) continue
      if (channel !== 'control') throw new ProtocolError(`${channel} data before authentication`)
      frames.push(...got)
      if (frames.length > 1) throw new ProtocolError('more than one frame before authentication')
    }
  }

  /** Setup is over: the connection reads from now on (starting with the read in flight). */
  handOver (): void { this.#handedOver = true }

  read (max: number): Promise<Uint8Array | null> {
    const p = this.#inflight
    if (p !== undefined && this.#handedOver) {
      this.#inflight = undefined
      return p
    }
    return this.#inner.read(max)
  }

  id (): string { return this.#inner.id() }
  write (data: Uint8Array): Promise<void> { return this.#inner.write(data) }
  finishWrite (): Promise<void> | void { return this.#inner.finishWrite() }
  resetWrite (): Promise<void> | void { return this.#inner.resetWrite() }
  stopRead (): Promise<void> | void { return this.#inner.stopRead() }
}
