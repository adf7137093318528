/**
 * Which topics the embedded broker could deliver to anyone (issue 16).
 *
 * The twin engine publishes a result and a document for every mapper update
 * (DESIGN.md §8). Each publish costs a JSON encode and aedes' whole QoS 1
 * pipeline (offline-queue lookup, emitter match, packet copies) even when no
 * client subscribed to those topics — in bench:twins the mapper listens to
 * deltas only, and that was ≈ 7 % of the edge's CPU per update. A message
 * nobody subscribed to goes nowhere in MQTT (MQTT 3.1.1 §3.3.5: it is
 * delivered to matching subscriptions only; ours are never retained), so the
 * edge may skip it.
 *
 * The index is conservative: it only grows (unsubscribes and disconnects do
 * not remove a filter), it holds every filter granted to any client since
 * start plus every filter of a persistent session restored from LMDB, and it
 * matches `+`/`#` like aedes' matcher, including topics that start with `$`
 * (stricter MQTT §4.7.2 would not; aedes delivers them). So it never answers
 * "nobody" where aedes would have delivered. It is bounded: beyond
 * `maxFilters` exact or `maxWildcards` wildcard filters it stops indexing and
 * answers "maybe" for every topic, which is the old behaviour.
 */
const MAX_ANSWERS = 4096

export class SubscriberIndex {
  readonly #exact = new Set<string>()
  readonly #wildSeen = new Set<string>()
  readonly #wild: string[][] = []
  readonly #maxFilters: number
  readonly #maxWildcards: number
  #overflow = false
  /** Answers per topic since the last change of the index (the engine asks 2–3 times per update); bounded. */
  readonly #answers = new Map<string, boolean>()

  constructor (maxFilters = 10_000, maxWildcards = 256) {
    this.#maxFilters = maxFilters
    this.#maxWildcards = maxWildcards
  }

  /** True once the bounds were exceeded: every topic may have subscribers. */
  get overflowed (): boolean { return this.#overflow }

  add (filter: string): void {
    if (this.#overflow) return
    this.#answers.clear()
    if (filter.includes('+') || filter.includes('#')) {
      if (this.#wildSeen.has(filter)) return
      if (this.#wildSeen.size >= this.#maxWildcards) { this.#overflowed(); return }
      this.#wildSeen.add(filter)
      this.#wild.push(filter.split('/'))
      return
    }
    if (this.#exact.has(filter)) return
    if (this.#exact.size >= this.#maxFilters) { this.#overflowed(); return }
    this.#exact.add(filter)
  }

  /** False only when no filter ever granted could match `topic`. */
  mayMatch (topic: string): boolean {
    if (this.#overflow || this.#exact.has(topic)) return true
    if (this.#wild.length === 0) return false
    const known = this.#answers.get(topic)
    if (known !== undefined) return known
    const levels = topic.split('/')
    let any = false
    for (const f of this.#wild) if (matches(f, levels)) { any = true; break }
    if (this.#answers.size >= MAX_ANSWERS) this.#answers.clear()
    this.#answers.set(topic, any)
    return any
  }

  #overflowed (): void {
    this.#overflow = true
    this.#exact.clear()
    this.#wildSeen.clear()
    this.#wild.length = 0
  }
}

/** MQTT filter match, level by level: `+` one level, `#` the rest (including none: `a/#` matches `a`). */
function matches (filter: string[], levels: string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i]
    if (f === '#') return true
    if (i >= levels.length) return false
    if (f !== '+' && f !== levels[i]) return false
  }
  return filter.length === levels.length
}
