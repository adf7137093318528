/**
 * Bounded queue behind `hub.messages()`. When consumers fall behind by
 * `highWaterMark` messages it asks the hub to pause the sessions (transport
 * flow control then pushes back to the edges) and resumes them at half — a
 * slow consumer slows producers instead of growing memory or dropping.
 * With no iterator attached nothing is queued (the 'message' event serves).
 */
import type { UpstreamMessage } from './types.js'

export class UpstreamQueue implements AsyncIterable<UpstreamMessage> {
  readonly #hwm: number
  readonly #setPaused: (paused: boolean) => void
  #items: UpstreamMessage[] = []
  #waiters: Array<(r: IteratorResult<UpstreamMessage>) => void> = []
  #iterators = 0
  #paused = false
  #ended = false

  readonly #onIterator: () => void

  constructor (highWaterMark: number, setPaused: (paused: boolean) => void, onIterator: () => void = () => {}) {
    this.#hwm = highWaterMark
    this.#setPaused = setPaused
    this.#onIterator = onIterator
  }

  /** Iterators currently attached (consumers of hub.messages()). */
  get iterators (): number { return this.#iterators }

  get paused (): boolean { return this.#paused }
  get length (): number { return this.#items.length }

  push (m: UpstreamMessage): void {
    if (this.#ended || this.#iterators === 0) return
    const w = this.#waiters.shift()
    if (w !== undefined) { w({ value: m, done: false }); return }
    this.#items.push(m)
    if (!this.#paused && this.#items.length >= this.#hwm) {
      this.#paused = true
      this.#setPaused(true)
    }
  }

  end (): void {
    this.#ended = true
    for (const w of this.#waiters.splice(0)) w({ value: undefined, done: true })
    if (this.#paused) { this.#paused = false; this.#setPaused(false) }
  }

  [Symbol.asyncIterator] (): AsyncIterator<UpstreamMessage> {
    this.#iterators++
    this.#onIterator()
    let done = false
    const finish = (): IteratorResult<UpstreamMessage> => {
      if (!done) {
        done = true
        this.#iterators--
        if (this.#iterators === 0) {
          this.#items = []
          if (this.#paused) { this.#paused = false; this.#setPaused(false) }
        }
      }
      return { value: undefined, done: true }
    }
    return {
      next: async () => {
        if (done) return { value: undefined, done: true }
        const item = this.#items.shift()
        if (item !== undefined) {
          if (this.#paused && this.#items.length <= this.#hwm / 2) { this.#paused = false; this.#setPaused(false) }
          return { value: item, done: false }
        }
        if (this.#ended) return finish()
        return await new Promise(resolve => this.#waiters.push(resolve))
      },
      return: async () => finish()
    }
  }
}
