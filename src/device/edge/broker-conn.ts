/**
 * The stream aedes talks to for one device connection: reads come from the
 * packet-size guard (broker-guard.ts), writes go to the socket (TCP, TLS or
 * a WebSocket stream).
 *
 * Why not `Duplex.from({ readable, writable })`: mqtt-packet writes one
 * packet as several small chunks (fixed header, packet id, topic, payload)
 * between `cork()` and a next-tick `uncork()`. Duplex.from's writable side
 * has no `_writev`, so after the uncork every chunk became its own
 * `socket.write` — one syscall per chunk, two or more per PUBACK; measured
 * as 9 % of the process in bench:twins (issue 16). Here the corked chunks
 * go to the socket as one `writev`, and the PUBACKs aedes writes in one
 * turn (a group commit's worth, twin-engine.ts) leave as one write.
 */
import { Duplex, type Readable, type Writable } from 'node:stream'

type Chunk = { chunk: Buffer | string, encoding: BufferEncoding }

export class BrokerConn extends Duplex {
  readonly #input: Readable
  readonly #output: Writable

  constructor (input: Readable, output: Writable) {
    // allowHalfOpen false: the device closing its side ends the MQTT session (as Duplex.from did with aedes).
    super({ allowHalfOpen: false, decodeStrings: false })
    this.#input = input
    this.#output = output
    input.on('data', (chunk: Buffer) => { if (!this.push(chunk)) input.pause() })
    input.once('end', () => { this.push(null) })
    // The guard's error (oversize packet) is handled by its owner, which cuts the socket; so is the socket's.
    input.once('error', err => { this.destroy(err) })
    output.once('close', () => { this.destroy() })
    output.on('error', () => {}) // reported through 'close' → destroy; aedes sees the close
  }

  override _read (): void { this.#input.resume() }

  override _write (chunk: Buffer | string, encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#output.write(chunk, encoding, cb)
  }

  override _writev (chunks: Chunk[], cb: (err?: Error | null) => void): void {
    const out = this.#output
    out.cork()
    for (let i = 0; i < chunks.length - 1; i++) out.write((chunks[i] as Chunk).chunk, (chunks[i] as Chunk).encoding)
    const last = chunks[chunks.length - 1] as Chunk
    out.write(last.chunk, last.encoding, cb)
    out.uncork()
  }

  override _final (cb: (err?: Error | null) => void): void {
    this.#output.end()
    cb()
  }

  override _destroy (err: Error | null, cb: (err: Error | null) => void): void {
    this.#input.destroy()
    this.#output.destroy()
    cb(err)
  }
}
