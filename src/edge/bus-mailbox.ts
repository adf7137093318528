/**
 * A module's bounded mailbox: a FIFO bounded by message count and estimated
 * bytes, with an explicit overflow policy (bus-types.ts OverflowPolicy), one
 * consumer at a time, and a bounded list of blocked senders.
 *
 * Connection events (pushState) bypass the bounds so a full mailbox can never
 * hide a disconnect from its module; at most one is queued per mailbox (a
 * newer one supersedes the unconsumed older one, counted), which bounds them.
 */
import type { Clock, TimerHandle } from '../util/clock.js'
import { isExpired, type Envelope } from '../codec/envelope.js'
import { MailboxFullError, ModuleBusError, type EdgeFabricError } from '../errors.js'
import type { DropReason, ResolvedMailboxOptions } from './bus-types.js'

interface Entry { env: Envelope, size: number, state: boolean }

interface Waiter {
  entry: Entry
  resolve: () => void
  reject: (err: EdgeFabricError) => void
  timer: TimerHandle | undefined
}

export interface MailboxHooks {
  /** A message was removed or refused without reaching the consumer. */
  dropped (env: Envelope, reason: DropReason): void
}

/** Compact the backing array once this many consumed slots pile up at its front. */
const COMPACT_AT = 1024

export class Mailbox {
  readonly module: string
  readonly options: ResolvedMailboxOptions
  readonly #clock: Clock
  readonly #hooks: MailboxHooks
  // FIFO as array + head index; removed-from-the-middle slots become undefined.
  #queue: Array<Entry | undefined> = []
  #head = 0
  #count = 0 // live non-state entries (what capacity bounds)
  #bytes = 0 // estimated bytes of live non-state entries
  #stateEntry: Entry | undefined
  #waiters: Waiter[] = []
  #consumer: ((env: Envelope | undefined) => void) | undefined
  #closed = false

  accepted = 0
  consumed = 0
  readonly dropped: Partial<Record<DropReason, number>> = {}

  constructor (module: string, options: ResolvedMailboxOptions, clock: Clock, hooks: MailboxHooks) {
    this.module = module
    this.options = options
    this.#clock = clock
    this.#hooks = hooks
  }

  get depth (): number { return this.#count + (this.#stateEntry !== undefined ? 1 : 0) }
  get bytes (): number { return this.#bytes }
  get blockedSenders (): number { return this.#waiters.length }
  get closed (): boolean { return this.#closed }

  /** Queue `env`. Resolves when accepted; rejects with MailboxFullError per policy, ModuleBusError('closed') when closed. */
  offer (env: Envelope, size: number): Promise<void> {
    if (this.#closed) return Promise.reject(new ModuleBusError('closed', `module "${this.module}" is closed`))
    // Checked on entry too, not only on take: an expired message must not take space or block a sender.
    if (isExpired(env, this.#clock.now())) { this.#count1(env, 'expired'); return Promise.resolve() }
    const o = this.options
    if (size > o.maxBytes) {
      return this.#refuse(env, 'too-large', `message ${env.header.id} of ~${size} bytes exceeds maxBytes ${o.maxBytes}`)
    }
    const entry: Entry = { env, size, state: false }
    // Waiting senders go first (FIFO): a new sender must not overtake them.
    if (this.#waiters.length === 0 && this.#fits(size)) {
      this.#push(entry)
      return Promise.resolve()
    }
    switch (o.overflow) {
      case 'reject':
        return this.#refuse(env, 'full', `full (${this.#count}/${o.capacity} messages, ~${this.#bytes}/${o.maxBytes} bytes)`)
      case 'drop-oldest':
        while (!this.#fits(size)) this.#evictOldest()
        this.#push(entry)
        return Promise.resolve()
      case 'block':
        // The waiting list holds messages too, so it is bounded (by capacity).
        if (this.#waiters.length >= o.capacity) {
          return this.#refuse(env, 'too-many-blocked', `${this.#waiters.length} senders already blocked`)
        }
        return new Promise<void>((resolve, reject) => {
          const waiter: Waiter = { entry, resolve, reject, timer: undefined }
          waiter.timer = this.#clock.setTimeout(() => {
            const i = this.#waiters.indexOf(waiter)
            if (i < 0) return
            this.#waiters.splice(i, 1)
            this.#count1(env, 'block-timeout')
            reject(new MailboxFullError(this.module, 'block-timeout', `no space within ${o.blockTimeoutMs} ms for message ${env.header.id}`))
          }, o.blockTimeoutMs)
          this.#waiters.push(waiter)
        })
    }
  }

  /** Queue a connection event, bypassing the bounds; supersedes an unconsumed older one. */
  pushState (env: Envelope): void {
    if (this.#closed) return
    const old = this.#stateEntry
    if (old !== undefined) {
      const i = this.#queue.indexOf(old, this.#head)
      if (i >= 0) this.#queue[i] = undefined
      this.#stateEntry = undefined
      this.#count1(old.env, 'superseded')
    }
    const entry: Entry = { env, size: 0, state: true }
    if (this.#consumer !== undefined) { this.#handoff(entry); return }
    this.#stateEntry = entry
    this.#queue.push(entry)
  }

  /** Next message, or undefined at once when empty. */
  take (): Envelope | undefined {
    for (;;) {
      const entry = this.#shift()
      if (entry === undefined) return undefined
      if (!entry.state && isExpired(entry.env, this.#clock.now())) { this.#count1(entry.env, 'expired'); continue }
      this.consumed++
      return entry.env
    }
  }

  /** Next message, waiting for one; undefined when closed or cancelNext() is called. */
  next (): Promise<Envelope | undefined> {
    const env = this.take()
    if (env !== undefined || this.#closed) return Promise.resolve(env)
    return new Promise(resolve => { this.#consumer = resolve })
  }

  /** Wake a consumer waiting in next() with undefined (the consumer is stopping). */
  cancelNext (): void {
    const c = this.#consumer
    this.#consumer = undefined
    c?.(undefined)
  }

  /** Close: queued messages are dropped ('closed'), blocked senders rejected, the consumer woken with undefined. */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    for (;;) {
      const entry = this.#shift()
      if (entry === undefined) break
      this.#count1(entry.env, 'closed')
    }
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) {
      this.#clock.clearTimeout(w.timer)
      this.#count1(w.entry.env, 'closed')
      w.reject(new ModuleBusError('closed', `module "${this.module}" closed while the sender was blocked`))
    }
    this.cancelNext()
  }

  #fits (size: number): boolean {
    return this.#count < this.options.capacity && this.#bytes + size <= this.options.maxBytes
  }

  #push (entry: Entry): void {
    this.accepted++
    if (this.#consumer !== undefined) { this.#handoff(entry); return }
    this.#queue.push(entry)
    this.#count++
    this.#bytes += entry.size
  }

  #handoff (entry: Entry): void {
    // Only reached with an empty queue (a consumer waits only then).
    const c = this.#consumer
    this.#consumer = undefined
    this.consumed++
    c?.(entry.env)
  }

  #shift (): Entry | undefined {
    while (this.#head < this.#queue.length) {
      const entry = this.#queue[this.#head]
      this.#queue[this.#head++] = undefined
      if (entry === undefined) continue
      if (entry.state) this.#stateEntry = undefined
      else { this.#count--; this.#bytes -= entry.size }
      this.#compact()
      this.#admitWaiters()
      return entry
    }
    this.#queue = []
    this.#head = 0
    return undefined
  }

  #evictOldest (): void {
    for (let i = this.#head; i < this.#queue.length; i++) {
      const entry = this.#queue[i]
      if (entry === undefined || entry.state) continue // connection events are never evicted for space
      this.#queue[i] = undefined
      this.#count--
      this.#bytes -= entry.size
      this.#count1(entry.env, 'drop-oldest')
      return
    }
  }

  #admitWaiters (): void {
    while (this.#waiters.length > 0 && !this.#closed) {
      const w = this.#waiters[0] as Waiter
      if (!this.#fits(w.entry.size)) return
      this.#waiters.shift()
      this.#clock.clearTimeout(w.timer)
      this.#push(w.entry)
      w.resolve()
    }
  }

  #compact (): void {
    if (this.#head >= COMPACT_AT && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
  }

  #refuse (env: Envelope, reason: 'full' | 'too-large' | 'too-many-blocked', message: string): Promise<never> {
    this.#count1(env, reason)
    return Promise.reject(new MailboxFullError(this.module, reason, message))
  }

  #count1 (env: Envelope, reason: DropReason): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1
    this.#hooks.dropped(env, reason)
  }
}
