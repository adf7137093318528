/**
 * Packet-size guard in front of the embedded broker. aedes (mqtt-packet's
 * parser) buffers a whole packet whatever its announced length, so an
 * oversize PUBLISH would sit in memory before any handler could refuse it.
 * This Transform reads only MQTT fixed headers (type byte + variable-length
 * "remaining length", MQTT 3.1.1 §2.2.3) and cuts the connection when a
 * packet announces more than `maxPacketBytes`; the bytes themselves pass
 * through untouched. Packets within the bound but with a payload above
 * `maxPayloadBytes` are answered with an error by the twin engine instead.
 */
import { Transform, type TransformCallback } from 'node:stream'
import { EdgeFabricError } from '../../errors.js'

export class PacketTooLargeError extends EdgeFabricError {
  static readonly code = 'EF_MQTT_PACKET_TOO_LARGE'
  constructor (size: number, max: number) { super(PacketTooLargeError.code, `MQTT packet of ${size} bytes exceeds ${max}`) }
}

export class PacketSizeGuard extends Transform {
  readonly #max: number
  /** Bytes of the current packet body still to pass; -1 while reading a header. */
  #skip = -1
  #headerPos = 0
  #len = 0
  #mul = 1

  constructor (maxPacketBytes: number) {
    super()
    this.#max = maxPacketBytes
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let i = 0
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i)
        this.#skip -= n
        i += n
        if (this.#skip === 0) this.#skip = -1
        continue
      }
      const b = chunk[i++] as number
      if (this.#headerPos === 0) { // packet type byte
        this.#headerPos = 1
        this.#len = 0
        this.#mul = 1
        continue
      }
      this.#len += (b & 0x7f) * this.#mul
      this.#mul *= 128
      this.#headerPos++
      if ((b & 0x80) !== 0) {
        if (this.#headerPos > 4) { cb(new PacketTooLargeError(Infinity, this.#max)); return }
        continue
      }
      if (this.#len > this.#max) { cb(new PacketTooLargeError(this.#len, this.#max)); return }
      this.#headerPos = 0
      this.#skip = this.#len === 0 ? -1 : this.#len
    }
    cb(null, chunk)
  }
}
