/**
 * A counter increment per message, without the per-call cost of a labelled
 * counter (building the label object and its key). The reliable receiver
 * hands the application tens of thousands of messages per second, each
 * counted twice (messages received, and the bus's drop when no module takes
 * it); those two HotCounter.add calls were ≈5 % of the edge's CPU in the
 * store-and-forward drain profile (issue 16). Consecutive counts with the
 * same two label values are summed in a number and handed on when the values
 * change or at flush() (scrape time: EdgeNode.refreshMetrics), so a scrape
 * sees every count made before it.
 */
export class PairTally {
  readonly #add: (a: string, b: string, n: number) => void
  #a: string | undefined
  #b = ''
  #n = 0

  constructor (add: (a: string, b: string, n: number) => void) {
    this.#add = add
  }

  count (a: string, b: string): void {
    if (a === this.#a && b === this.#b) {
      this.#n++
      return
    }
    this.flush()
    this.#a = a
    this.#b = b
    this.#n = 1
  }

  /** Hand the pending sum on. */
  flush (): void {
    const n = this.#n
    if (n === 0 || this.#a === undefined) return
    this.#n = 0
    this.#add(this.#a, this.#b, n)
  }
}
