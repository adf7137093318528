/**
 * Router string dictionaries for codec streams (src/codec/stream.ts): on a
 * stream, the router strings that repeat from message to message (source,
 * destination, group, a custom operation, resource) are sent once and then
 * referred to by number, saving their bytes and their UTF-8 conversion on
 * both sides.
 *
 * Wire form of such a field in a stream frame (replacing version 1's
 * varint length + UTF-8), one unsigned LEB128 varint x, then:
 *   x odd            a reference to string number (x - 1) / 2 of this stream
 *   x % 4 === 0      a literal of x / 4 UTF-8 bytes follows, not remembered
 *   x % 4 === 2      a literal of (x - 2) / 4 bytes follows, remembered as
 *                    the next string number
 *
 * Bounds: MAX_STRINGS strings per stream and direction, never evicted, each
 * at most MAX_STRING_BYTES long. A string is remembered the SECOND time the
 * encoder sees it, so one-off values (a resource named once) do not use up
 * the numbers.
 */

export const MAX_STRINGS = 256
export const MAX_STRING_BYTES = 256
/** Strings seen once, waiting for a second sighting; cleared when full. */
const MAX_CANDIDATES = 1024

/** Encoder half of a stream's string dictionary. */
export class StringEncoder {
  readonly ids = new Map<string, number>()
  readonly #candidates = new Set<string>()
  readonly #order: string[] = []

  get count (): number { return this.#order.length }

  /**
   * Called for a string not in `ids`: true when it is to be remembered now
   * (the caller writes it as a remembered literal), false to send it plain.
   * `utf8Bytes` may be an upper bound; only short strings are remembered.
   */
  remember (s: string, utf8Bytes: number): boolean {
    if (utf8Bytes > MAX_STRING_BYTES || this.#order.length >= MAX_STRINGS) return false
    if (!this.#candidates.has(s)) {
      if (this.#candidates.size >= MAX_CANDIDATES) this.#candidates.clear()
      this.#candidates.add(s)
      return false
    }
    this.#candidates.delete(s)
    this.ids.set(s, this.#order.length)
    this.#order.push(s)
    return true
  }

  /** Forget strings remembered since count was `to` (their frame is not sent). */
  rollback (to: number): void {
    while (this.#order.length > to) this.ids.delete(this.#order.pop() as string)
  }
}
