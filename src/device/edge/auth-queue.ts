/**
 * The scrypt check queue of the MQTT login path (issue 13 item 8: "known-good
 * credentials served first"). A check's class is decided when a slot frees,
 * not when it was queued, so failures counted meanwhile demote the rest of a
 * burst:
 *
 *  - 0 trusted: the source logged in successfully and has failed nothing since;
 *  - 1 clean: the source has no failures and the username is within its budget;
 *  - 2 suspect: anything else.
 *
 * The lowest class goes first; within a class usernames take turns (the one
 * served longest ago first), so a flood on one username cannot starve the
 * others. Only a trusted check takes the last free slot, and only a trusted
 * or clean one the last two, and within a username a suspect check is
 * picked at random: with first-in-first-out, a burst queued just before a
 * device would delay it by the whole burst; at random, a device gets its fair
 * share even under a continuous flood from fresh addresses. The queue is
 * bounded overall (`maxQueued`) and per failing source (one), and every wait
 * has a deadline. A full queue refuses the newest check of its worst class to
 * admit a better one.
 */
import { randomInt } from 'node:crypto'
import type { Clock, TimerHandle } from '../../util/clock.js'

export type CheckClass = 0 | 1 | 2
/** Why a check was refused without running. */
export type QueueRefusal = 'queue-full' | 'source-pending' | 'queue-timeout'

export interface QueueLimits {
  maxConcurrent: number
  maxQueued: number
  queueTimeoutMs: number
}

interface Job {
  username: string
  source: string
  /** The class now, or a refusal decided by the caller (e.g. the source got blocked while waiting). */
  classify: () => CheckClass | string
  run: () => void
  refuse: (why: string) => void
  timer?: TimerHandle
}

export class CheckQueue {
  readonly #jobs: Job[] = []
  /** Username → sequence number of its last served check (round-robin). */
  readonly #served = new Map<string, number>()
  readonly #queuedBySource = new Map<string, number>()
  #seq = 0
  #running = 0
  #suspectRunning = 0

  constructor (readonly clock: Clock, readonly limits: QueueLimits, readonly random: (n: number) => number = n => randomInt(n)) {}

  get queued (): number { return this.#jobs.length }
  get running (): number { return this.#running }

  /**
   * Runs `fn` when its turn comes. `suspectSource`: the source has failures, so it may have
   * only one check waiting. Resolves with `fn`'s result (a rejection is `false`) or the refusal.
   */
  submit (username: string, source: string, suspectSource: boolean, classify: () => CheckClass | string, fn: () => Promise<boolean>): Promise<boolean | QueueRefusal | string> {
    if (suspectSource && (this.#queuedBySource.get(source) ?? 0) > 0) return Promise.resolve('source-pending')
    if (this.#jobs.length >= this.limits.maxQueued && !this.#evictFor(classify())) return Promise.resolve('queue-full')
    return new Promise(resolve => {
      const job: Job = {
        username,
        source,
        classify,
        refuse: why => resolve(why),
        run: () => {
          this.#running++
          const suspect = classify() === 2
          if (suspect) this.#suspectRunning++
          fn().then(resolve, () => resolve(false)).finally(() => {
            this.#running--
            if (suspect) this.#suspectRunning--
            this.#pump()
          })
        }
      }
      job.timer = this.clock.setTimeout(() => {
        if (this.#remove(job)) job.refuse('queue-timeout')
      }, this.limits.queueTimeoutMs)
      this.#jobs.push(job)
      this.#queuedBySource.set(source, (this.#queuedBySource.get(source) ?? 0) + 1)
      this.#pump()
    })
  }

  /**
   * A full queue makes room for a better class: the newest job of the worst class queued is
   * refused instead, so a flood that filled the queue cannot keep a trusted source out.
   */
  #evictFor (c: CheckClass | string): boolean {
    if (typeof c === 'string') return false
    let victim: Job | undefined
    let worst: number = c
    for (const job of this.#jobs) {
      const jc = job.classify()
      const rank = typeof jc === 'string' ? 3 : jc
      if (rank > worst || (rank === worst && victim !== undefined)) { victim = job; worst = rank }
    }
    if (victim === undefined || !this.#remove(victim)) return false
    const why = victim.classify()
    victim.refuse(typeof why === 'string' ? why : 'queue-full')
    return true
  }

  #remove (job: Job): boolean {
    const i = this.#jobs.indexOf(job)
    if (i < 0) return false
    this.#jobs.splice(i, 1)
    this.clock.clearTimeout(job.timer)
    const n = (this.#queuedBySource.get(job.source) ?? 1) - 1
    if (n <= 0) this.#queuedBySource.delete(job.source); else this.#queuedBySource.set(job.source, n)
    return true
  }

  #pump (): void {
    while (this.#running < this.limits.maxConcurrent && this.#jobs.length > 0) {
      const job = this.#next()
      if (job === undefined) return
      this.#remove(job)
      this.#served.delete(job.username) // re-inserted last; the map is bounded by the usernames ever queued together
      this.#served.set(job.username, ++this.#seq)
      if (this.#served.size > this.limits.maxQueued * 4) this.#served.delete(this.#served.keys().next().value as string)
      job.run()
    }
  }

  /** The next job to run; refused jobs found on the way are answered and dropped. */
  #next (): Job | undefined {
    let best: CheckClass | undefined
    const byClass: [Job[], Job[], Job[]] = [[], [], []]
    for (const job of [...this.#jobs]) {
      const c = job.classify()
      if (typeof c === 'string') { this.#remove(job); job.refuse(c); continue }
      byClass[c].push(job)
      if (best === undefined || c < best) best = c
    }
    if (best === undefined) return undefined
    // The last slot is kept for trusted checks and the one before for clean ones (issue 13 item 8: known-good
    // credentials served first), so a flood costs the others at most the running checks' time, never a queue.
    const max = this.limits.maxConcurrent
    if (best >= 1 && this.#running >= Math.max(1, max - 1)) return undefined
    if (best === 2 && this.#suspectRunning >= Math.max(1, max - 2)) return undefined
    const jobs = byClass[best]
    // The username served longest ago (never served: first) takes its turn.
    let turn: string | undefined
    let turnSeq = Infinity
    for (const j of jobs) {
      const s = this.#served.get(j.username) ?? -1
      if (s < turnSeq) { turn = j.username; turnSeq = s }
    }
    const mine = jobs.filter(j => j.username === turn)
    return best === 2 ? mine[this.random(mine.length)] : mine[0]
  }
}
