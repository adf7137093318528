/**
 * Short per-node history for the console's sparklines (RTT, bytes in/out,
 * queue depth), sampled by the fleet API every few seconds. A ring of `size`
 * samples per node in one Float64Array (5 numbers a sample): 32 samples ×
 * 40 B ≈ 1.3 KB a node, ≈ 13 MB at 10,000 nodes, allocated only for nodes
 * that were connected or had something queued at a sample.
 */
export interface NodeSample { t: number, rttMs: number, bytesIn: number, bytesOut: number, queue: number }

const FIELDS = 5

export class FleetHistory {
  readonly #rings = new Map<string, { buf: Float64Array, next: number, filled: number }>()
  constructor (readonly size: number) {}

  add (nodeId: string, s: NodeSample): void {
    let r = this.#rings.get(nodeId)
    if (r === undefined) { r = { buf: new Float64Array(this.size * FIELDS), next: 0, filled: 0 }; this.#rings.set(nodeId, r) }
    const o = r.next * FIELDS
    r.buf[o] = s.t; r.buf[o + 1] = s.rttMs; r.buf[o + 2] = s.bytesIn; r.buf[o + 3] = s.bytesOut; r.buf[o + 4] = s.queue
    r.next = (r.next + 1) % this.size
    if (r.filled < this.size) r.filled++
  }

  /** Oldest first, as columns; rates in bytes/s between consecutive samples. NaN (no value) becomes null. */
  get (nodeId: string): { t: number[], rttMs: Array<number | null>, inBps: Array<number | null>, outBps: Array<number | null>, queue: number[] } {
    const out = { t: [] as number[], rttMs: [] as Array<number | null>, inBps: [] as Array<number | null>, outBps: [] as Array<number | null>, queue: [] as number[] }
    const r = this.#rings.get(nodeId)
    if (r === undefined) return out
    const start = (r.next - r.filled + this.size) % this.size
    let prev: { t: number, i: number, o: number } | undefined
    for (let k = 0; k < r.filled; k++) {
      const o = ((start + k) % this.size) * FIELDS
      const t = r.buf[o] as number
      const rtt = r.buf[o + 1] as number
      const bi = r.buf[o + 2] as number
      const bo = r.buf[o + 3] as number
      out.t.push(t)
      out.rttMs.push(Number.isNaN(rtt) ? null : Math.round(rtt * 100) / 100)
      const dt = prev === undefined ? 0 : (t - prev.t) / 1000
      // A new session restarts its byte counters: a drop is no negative rate.
      out.inBps.push(prev === undefined || dt <= 0 || Number.isNaN(bi) || bi < prev.i ? null : Math.round((bi - prev.i) / dt))
      out.outBps.push(prev === undefined || dt <= 0 || Number.isNaN(bo) || bo < prev.o ? null : Math.round((bo - prev.o) / dt))
      out.queue.push(r.buf[o + 4] as number)
      prev = { t, i: bi, o: bo }
    }
    return out
  }

  delete (nodeId: string): void { this.#rings.delete(nodeId) }
}
