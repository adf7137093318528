/**
 * The quic:// wire protocol on top of QUIC streams.
 *
 * The dialer opens four bidirectional streams at connect, one per channel,
 * each starting with a 1-byte preface naming the channel (0 control, 1 high,
 * 2 normal, 3 bulk). The acceptor answers on the control stream with ACCEPT
 * (or REFUSE and a reason) before any data, so identity and capacity
 * refusals reach the dialer as typed errors instead of a bare reset.
 *
 * Every frame, in both directions, is the shared 4-byte length prefix
 * (./framing.ts, the length counts the type byte) + a 1-byte type + body:
 *   DATA   one encoded envelope
 *   CLOSE  "I am closing, no more data from me", control stream, body = UTF-8
 *          reason. The sender has finished (FIN) its three data streams.
 *   ACK    "I have read all your data" (your CLOSE or ACK, and the FIN of your
 *          three data streams) and "no more data from me"; then FIN on control.
 *   ACCEPT / REFUSE  connection setup, control stream, acceptor → dialer only.
 *
 * A side closes the QUIC connection once it has received an ACK and read all
 * of the peer's data: both sides then hold everything. QUIC's own
 * CONNECTION_CLOSE cannot do this job: the binding always closes with code 0
 * and closing drops data not yet sent. Simultaneous closes work the same way
 * (both send CLOSE, then both ACK).
 */
import type { Channel } from './types.js'
import { FRAME_HEADER_BYTES } from './framing.js'
import { settle, type NativeStream } from './quic-native.js'

export const CHANNEL_ORDER: readonly Channel[] = ['control', 'high', 'normal', 'bulk']
export const DATA_CHANNELS: readonly Channel[] = ['high', 'normal', 'bulk']
export const CHANNEL_ID: Readonly<Record<Channel, number>> = { control: 0, high: 1, normal: 2, bulk: 3 }

export const T_DATA = 0
export const T_CLOSE = 1
export const T_ACCEPT = 2
export const T_REFUSE = 3
export const T_ACK = 4

export const REFUSE_IDENTITY = 1
export const REFUSE_CAPACITY = 2
export const REFUSE_CLOSING = 3

/** Bytes added per envelope: length prefix + type byte. */
export const QUIC_FRAME_OVERHEAD = FRAME_HEADER_BYTES + 1

/** Largest single write / read. 64 KiB measured best; 4 KiB reads halved throughput. */
export const IO_CHUNK = 64 * 1024

/**
 * Pieces at least this big go to a gathering stream by reference; runs of
 * smaller ones (frame heads, small envelopes) are copied into one piece, so a
 * write names a handful of buffers, not one per frame.
 */
const GATHER_MIN = 1024

/** A stream that can write several buffers as one write without a copy (the edgefabric engine's EngineStream). */
interface GatherStream { writev?: (parts: readonly Uint8Array[]) => Promise<void> }

const MAX_REASON_BYTES = 1024

export function frameHead (type: number, bodyLength: number): Uint8Array {
  const h = new Uint8Array(QUIC_FRAME_OVERHEAD)
  new DataView(h.buffer).setUint32(0, bodyLength + 1, false)
  h[FRAME_HEADER_BYTES] = type
  return h
}

/** A complete small frame (control messages). */
export function controlFrame (type: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(QUIC_FRAME_OVERHEAD + body.byteLength)
  out.set(frameHead(type, body.byteLength))
  out.set(body, QUIC_FRAME_OVERHEAD)
  return out
}

export function reasonBytes (reason: string | undefined): Uint8Array {
  const b = Buffer.from(reason ?? '', 'utf8')
  return b.byteLength <= MAX_REASON_BYTES ? b : b.subarray(0, MAX_REASON_BYTES)
}

export function refuseFrame (code: number, text: string): Uint8Array {
  const t = reasonBytes(text)
  const body = new Uint8Array(1 + t.byteLength)
  body[0] = code
  body.set(t, 1)
  return controlFrame(T_REFUSE, body)
}

export function utf8 (b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8')
}

/**
 * Serialized, coalesced writes to one stream. Only one native write is in
 * flight at a time (keeps order); small frames queued meanwhile are merged
 * into one write of at most IO_CHUNK bytes; large payloads are sliced.
 * `enqueue` returns false above `budget` buffered bytes; `onWritable` fires
 * once the buffer falls below a quarter of it.
 */
export class StreamWriter {
  readonly #stream: NativeStream
  readonly #budget: number
  readonly #onWritable: () => void
  readonly #onError: (err: unknown) => void
  #pieces: Uint8Array[] = []
  #buffered = 0
  #writing = false
  #blocked = false
  #dead = false
  #finished = false
  #idleWaiters: Array<() => void> = []

  constructor (stream: NativeStream, budget: number, onWritable: () => void, onError: (err: unknown) => void) {
    this.#stream = stream
    this.#budget = budget
    this.#onWritable = onWritable
    this.#onError = onError
  }

  get bufferedBytes (): number { return this.#buffered }

  /** Queue one frame. Returns false when the caller should wait for onWritable. */
  enqueue (type: number, body: Uint8Array): boolean {
    if (this.#dead || this.#finished) return true
    this.#pieces.push(frameHead(type, body.byteLength))
    if (body.byteLength > 0) this.#pieces.push(body)
    this.#buffered += QUIC_FRAME_OVERHEAD + body.byteLength
    void this.#pump()
    if (this.#buffered >= this.#budget) {
      this.#blocked = true
      return false
    }
    return true
  }

  /** Resolves once everything queued has been handed to QUIC (or the writer died). */
  idle (): Promise<void> {
    if (!this.#writing && this.#pieces.length === 0) return Promise.resolve()
    return new Promise(resolve => this.#idleWaiters.push(resolve))
  }

  /** Flush, then send FIN. Later enqueues are dropped. */
  async finish (): Promise<void> {
    if (this.#finished) return
    await this.idle()
    if (this.#finished) return
    this.#finished = true
    if (!this.#dead) await settle(() => this.#stream.finishWrite())
  }

  /** Drop everything; no more writes. */
  kill (): void {
    this.#dead = true
    this.#pieces = []
    this.#buffered = 0
    this.#wakeIdle()
  }

  async #pump (): Promise<void> {
    if (this.#writing) return
    this.#writing = true
    try {
      const gather = (this.#stream as GatherStream).writev
      while (this.#pieces.length > 0 && !this.#dead) {
        let n: number
        if (gather !== undefined) {
          // Issue 18 (CPU per byte): a 64 KiB envelope behind its 5-byte head
          // used to be copied into a fresh 64 KiB chunk here, then again into
          // the engine's command buffer; now the engine gathers the pieces.
          const parts = this.#nextParts()
          n = 0
          for (const p of parts) n += p.byteLength
          await gather.call(this.#stream, parts)
        } else {
          const chunk = this.#nextChunk()
          n = chunk.byteLength
          await this.#stream.write(chunk)
        }
        if (this.#dead) break
        this.#buffered -= n
        if (this.#blocked && this.#buffered < this.#budget / 4) {
          this.#blocked = false
          this.#onWritable() // may enqueue synchronously; the loop picks that up
        }
      }
    } catch (err) {
      if (!this.#dead) {
        this.kill()
        this.#onError(err)
      }
    } finally {
      this.#writing = false
      if (this.#pieces.length === 0 || this.#dead) this.#wakeIdle()
    }
  }

  #nextChunk (): Uint8Array {
    const first = this.#pieces[0] as Uint8Array
    if (first.byteLength >= IO_CHUNK || this.#pieces.length === 1) {
      const n = Math.min(first.byteLength, IO_CHUNK)
      if (n === first.byteLength) this.#pieces.shift()
      else this.#pieces[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    // Coalesce small pieces (frame heads and small envelopes) into one write.
    let size = 0
    for (const p of this.#pieces) {
      size += p.byteLength
      if (size >= IO_CHUNK) break
    }
    size = Math.min(size, IO_CHUNK)
    const out = new Uint8Array(size)
    let off = 0
    while (off < size) {
      const p = this.#pieces[0] as Uint8Array
      const k = Math.min(p.byteLength, size - off)
      out.set(k === p.byteLength ? p : p.subarray(0, k), off)
      off += k
      if (k === p.byteLength) this.#pieces.shift()
      else this.#pieces[0] = p.subarray(k)
    }
    return out
  }

  /** Up to IO_CHUNK bytes of the queue as pieces: big ones as they are, runs of small ones copied together. */
  #nextParts (): Uint8Array[] {
    const parts: Uint8Array[] = []
    let size = 0
    let run: Uint8Array[] = []
    let runBytes = 0
    const endRun = (): void => {
      if (run.length === 1) parts.push(run[0] as Uint8Array)
      else if (run.length > 1) {
        const out = new Uint8Array(runBytes)
        let off = 0
        for (const p of run) { out.set(p, off); off += p.byteLength }
        parts.push(out)
      }
      run = []
      runBytes = 0
    }
    while (size < IO_CHUNK && this.#pieces.length > 0) {
      const p = this.#pieces[0] as Uint8Array
      const k = Math.min(p.byteLength, IO_CHUNK - size)
      const piece = k === p.byteLength ? p : p.subarray(0, k)
      if (k === p.byteLength) this.#pieces.shift()
      else this.#pieces[0] = p.subarray(k)
      size += k
      if (k >= GATHER_MIN) {
        endRun()
        parts.push(piece)
      } else {
        run.push(piece)
        runBytes += k
      }
    }
    endRun()
    return parts
  }

  #wakeIdle (): void {
    const w = this.#idleWaiters
    this.#idleWaiters = []
    for (const f of w) f()
  }
}
