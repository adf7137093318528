/**
 * Latency samples for `edgefabric demo`: a count and a bounded window of
 * recent samples (at most 5000 kept) for percentiles.
 */
export class Stats {
  count = 0
  samples: number[] = []
  add (ms: number): void {
    this.count++
    this.samples.push(ms)
    // bounded: the demo can run --forever
    if (this.samples.length > 5000) this.samples.splice(0, 2500)
  }

  /** The q-quantile of the kept samples in ms, 2 decimals; '-' without samples. */
  pct (q: number): string {
    if (this.samples.length === 0) return '-'
    const s = [...this.samples].sort((a, b) => a - b)
    return (s[Math.min(s.length - 1, Math.floor(q * s.length))] as number).toFixed(2)
  }
}
