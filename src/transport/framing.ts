/**
 * Length-prefixed framing for byte-stream transports (QUIC streams,
 * WebTransport streams): a 4-byte big-endian length, then the payload.
 * The length is checked against the maximum frame size BEFORE any buffer for
 * the payload is allocated (DESIGN.md §2), so a hostile length costs nothing.
 */
import { DecodeError, FrameTooLargeError } from '../errors.js'

export const FRAME_HEADER_BYTES = 4

/** The 4-byte length prefix for a payload of `length` bytes. */
export function frameHeader (length: number): Uint8Array {
  const h = new Uint8Array(FRAME_HEADER_BYTES)
  new DataView(h.buffer).setUint32(0, length, false)
  return h
}

/** Prefix + payload in one buffer (one copy). Prefer writing header and payload separately on hot paths. */
export function encodeFrame (payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength)
  new DataView(out.buffer).setUint32(0, payload.byteLength, false)
  out.set(payload, FRAME_HEADER_BYTES)
  return out
}

/**
 * Incremental decoder. `push(chunk)` returns every complete frame payload.
 * Throws FrameTooLargeError for a length above the limit, DecodeError for a
 * zero length; after a throw the decoder is poisoned (the stream must close).
 */
export class FrameDecoder {
  /**
   * Largest payload accepted, checked from each frame's header. Writable: a
   * connection keeps it at the small pre-auth limit until its peer
   * authenticated (./pre-auth.ts), then raises it; frames already being
   * assembled were checked against the limit in force when their header came.
   */
  maxFrameSize: number
  #chunks: Uint8Array[] = []
  #buffered = 0
  #need = -1 // payload length of the frame being assembled, -1 = reading header
  #failed: Error | undefined

  constructor (maxFrameSize: number) {
    this.maxFrameSize = maxFrameSize
  }

  /** Bytes held that do not yet form a complete frame. */
  get bufferedBytes (): number { return this.#buffered }

  push (chunk: Uint8Array): Uint8Array[] {
    if (this.#failed !== undefined) throw this.#failed
    const out: Uint8Array[] = []
    if (chunk.byteLength > 0) {
      this.#chunks.push(chunk)
      this.#buffered += chunk.byteLength
    }
    try {
      for (;;) {
        if (this.#need < 0) {
          if (this.#buffered < FRAME_HEADER_BYTES) break
          const h = this.#take(FRAME_HEADER_BYTES)
          const len = new DataView(h.buffer, h.byteOffset, FRAME_HEADER_BYTES).getUint32(0, false)
          if (len === 0) throw new DecodeError('zero-length frame')
          if (len > this.maxFrameSize) throw new FrameTooLargeError(len, this.maxFrameSize)
          this.#need = len
        }
        if (this.#buffered < this.#need) break
        out.push(this.#take(this.#need))
        this.#need = -1
      }
    } catch (err) {
      this.#failed = err as Error
      this.#chunks = []
      this.#buffered = 0
      throw err
    }
    return out
  }

  /** Remove and return the first n buffered bytes (n ≤ buffered). Zero-copy when one chunk holds them. */
  #take (n: number): Uint8Array {
    const first = this.#chunks[0] as Uint8Array
    if (first.byteLength >= n) {
      if (first.byteLength === n) this.#chunks.shift()
      else this.#chunks[0] = first.subarray(n)
      this.#buffered -= n
      return first.subarray(0, n)
    }
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      const c = this.#chunks[0] as Uint8Array
      const k = Math.min(c.byteLength, n - off)
      out.set(c.subarray(0, k), off)
      off += k
      if (k === c.byteLength) this.#chunks.shift()
      else this.#chunks[0] = c.subarray(k)
    }
    this.#buffered -= n
    return out
  }
}
