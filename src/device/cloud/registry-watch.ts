/**
 * Bounded change watchers of the device registry.
 *
 * Slow-watcher policy: a watcher whose buffer is full is CLOSED with
 * WatchOverflowError (its iterator throws it after yielding what it had
 * buffered), and the overflow is counted. We do not drop-oldest: a watcher
 * that silently misses a desired/reported change would act on a wrong picture
 * of the device; a closed watch tells it to re-read and watch again (the
 * Kubernetes "410 Gone" contract). Other watchers and the registry are not
 * affected by a slow one.
 */
import { DeviceRegistryClosedError, TooManyWatchersError, WatchOverflowError } from '../errors.js'
import type { DeviceChange, WatchFilter } from './registry-types.js'

function matches (f: WatchFilter, c: DeviceChange): boolean {
  if (f.namespace !== undefined && f.namespace !== c.namespace) return false
  if (f.name !== undefined && f.name !== c.name) return false
  if (f.nodeId !== undefined && f.nodeId !== c.nodeId) return false
  if (f.types !== undefined && !f.types.includes(c.type)) return false
  return true
}

class Watcher implements AsyncIterableIterator<DeviceChange> {
  readonly #buf: DeviceChange[] = []
  #waiting: { resolve: (r: IteratorResult<DeviceChange>) => void, reject: (e: Error) => void } | undefined
  #done = false
  #error: Error | undefined

  constructor (readonly filter: WatchFilter, readonly limit: number, readonly onEnd: (w: Watcher) => void) {}

  /** Returns false when the watcher overflowed (and is now closed). */
  push (c: DeviceChange): boolean {
    if (this.#done) return true
    if (this.#waiting !== undefined) {
      const w = this.#waiting
      this.#waiting = undefined
      w.resolve({ value: c, done: false })
      return true
    }
    if (this.#buf.length >= this.limit) {
      this.end(new WatchOverflowError(this.limit))
      return false
    }
    this.#buf.push(c)
    return true
  }

  end (error?: Error): void {
    if (this.#done) return
    this.#done = true
    this.#error = error
    this.onEnd(this)
    const w = this.#waiting
    this.#waiting = undefined
    if (w !== undefined) {
      if (error !== undefined) { this.#error = undefined; w.reject(error) } else w.resolve({ value: undefined, done: true })
    }
  }

  async next (): Promise<IteratorResult<DeviceChange>> {
    const c = this.#buf.shift()
    if (c !== undefined) return { value: c, done: false }
    if (this.#done) {
      const e = this.#error
      this.#error = undefined // thrown once
      if (e !== undefined) throw e
      return { value: undefined, done: true }
    }
    return await new Promise((resolve, reject) => { this.#waiting = { resolve, reject } })
  }

  async return (): Promise<IteratorResult<DeviceChange>> {
    this.#buf.length = 0
    this.end()
    return { value: undefined, done: true }
  }

  [Symbol.asyncIterator] (): AsyncIterableIterator<DeviceChange> { return this }
}

export class WatchSet {
  readonly #watchers = new Set<Watcher>()
  #closed = false

  constructor (readonly limit: number, readonly maxWatchers: number, readonly onOverflow: () => void) {}

  get size (): number { return this.#watchers.size }

  open (filter: WatchFilter): AsyncIterableIterator<DeviceChange> {
    if (this.#closed) throw new DeviceRegistryClosedError()
    if (this.#watchers.size >= this.maxWatchers) throw new TooManyWatchersError(this.maxWatchers)
    const w = new Watcher({ ...filter }, this.limit, x => { this.#watchers.delete(x) })
    this.#watchers.add(w)
    return w
  }

  publish (c: DeviceChange): void {
    for (const w of [...this.#watchers]) {
      if (!matches(w.filter, c)) continue
      if (!w.push(c)) this.onOverflow()
    }
  }

  /** End every watcher normally (registry closing). */
  close (): void {
    this.#closed = true
    for (const w of [...this.#watchers]) w.end()
  }
}
