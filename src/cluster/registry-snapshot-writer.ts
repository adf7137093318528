/**
 * Who writes registry snapshots and when (DESIGN.md §10b; format in
 * registry-snapshot.ts, storage in registry-snapshot-store.ts).
 *
 * Every hub captures the view at the log seqs that are multiples of
 * `snapshotEvery` (cheap: a shallow copy of the maps between two entries);
 * since the view at a seq is the same on every hub, so are the bytes. The
 * first hub to publish chunk 0 writes it; another finds the manifest already
 * there ('exists') or its chunk 0 a duplicate of the same Msg-Id ('busy') and
 * drops its copy, so a race costs one capture and at most one message. At most
 * one capture is held at a time (a capture offered while a write runs is
 * dropped: the next multiple comes soon), so memory stays bounded by one view.
 *
 * After the manifest's PubAck (stored on a quorum), the log is purged below
 * the OLDER of the two kept snapshots, not the newest: a hub a little behind
 * the head reads on without a reload, and if the newest snapshot cannot be
 * read the older one plus the log after it still rebuild the view. Nothing
 * a verdict after a snapshot needs lives only in the purged entries: the
 * snapshot carries the recent commits and pieces (registry-snapshot.ts).
 * The log holds between 1× and 2× `snapshotEvery` entries (plus what arrives
 * while a snapshot is written).
 *
 * A hub killed half-way leaves chunks without a manifest: never read, purged
 * by the next writer's prune.
 */
import { toError } from '../errors.js'
import type { ClusterConnection } from './connection.js'
import { RegistrySnapshotError, type ResolvedSnapshotOptions, type SnapshotState } from './registry-snapshot.js'
import { KEEP_SNAPSHOTS, SnapshotStore } from './registry-snapshot-store.js'

/**
 * Counters a hub exports for compaction (src/ops/metrics.ts, `edgefabric_hub_registry_*`):
 * `snapshots` by `event` (written|skipped|loaded|invalid|failed), `purged` log entries.
 */
export interface RegistryLogMetrics {
  readonly snapshots: { inc: (labels: { event: 'written' | 'skipped' | 'loaded' | 'invalid' | 'failed' }) => void }
  readonly purged: { inc: (n: number) => void }
}

export class SnapshotWriter {
  readonly store: SnapshotStore
  readonly #c: ClusterConnection
  readonly #logStream: string
  readonly #every: number
  readonly #onError: (err: Error) => void
  readonly #metrics: RegistryLogMetrics | undefined
  #latest = 0
  #writing: Promise<void> | undefined
  #closed = false

  constructor (c: ClusterConnection, logStream: string, options: Readonly<ResolvedSnapshotOptions>, onError: (err: Error) => void, metrics?: RegistryLogMetrics) {
    this.#c = c
    this.#logStream = logStream
    this.#every = options.snapshotEvery
    this.#onError = onError
    this.#metrics = metrics
    this.store = new SnapshotStore(c, logStream, options.chunkBytes)
  }

  /** Seq of the newest snapshot known complete here (0: none). */
  get latest (): number { return this.#latest }

  /** Note a snapshot seen complete (loaded). */
  saw (seq: number): void { if (seq > this.#latest) this.#latest = seq }

  /** True when the view right after `q` is to be captured. */
  due (q: number): boolean {
    return this.#every > 0 && !this.#closed && q % this.#every === 0 && q > this.#latest && this.#writing === undefined
  }

  /** Store the captured view in the background (errors reported, never thrown). */
  offer (state: SnapshotState): void {
    this.#writing = this.#write(state)
      .catch(err => {
        this.#metrics?.snapshots.inc({ event: 'failed' })
        this.#onError(new RegistrySnapshotError(`writing the registry snapshot at ${state.seq} failed: ${toError(err).message}`, { cause: err }))
      })
      .finally(() => { this.#writing = undefined })
  }

  async #write (state: SnapshotState): Promise<void> {
    const t0 = Date.now()
    this.#c.logger.debug({ seq: state.seq }, 'registry snapshot: writing')
    const r = await this.#c.call('writing a registry snapshot', async () => await this.store.write(state))
    if (r !== 'written') {
      // 'busy': another hub is writing these very bytes; if it dies half-way, the next
      // multiple of snapshotEvery is written instead (the log is only purged below a
      // complete snapshot, so nothing is lost meanwhile).
      this.#metrics?.snapshots.inc({ event: 'skipped' })
      this.#c.logger.debug({ seq: state.seq, reason: r }, 'registry snapshot written by another hub')
      if (r === 'exists') this.saw(state.seq)
      return
    }
    this.#metrics?.snapshots.inc({ event: 'written' })
    const keep = await this.#c.call('pruning registry snapshots', async () => await this.store.prune())
    let purged = 0
    const older = keep[KEEP_SNAPSHOTS - 1]
    if (keep.length >= KEEP_SNAPSHOTS && older !== undefined) {
      const res = await this.#c.call('purging the registry log', async () => await this.#c.jsm.streams.purge(this.#logStream, { seq: older + 1 }))
      purged = res.purged
      if (purged > 0) this.#metrics?.purged.inc(purged)
    }
    this.saw(state.seq) // after the purge: `latest` means stored, pruned and purged
    this.#c.logger.info({ seq: state.seq, ms: Date.now() - t0, kept: keep, purged, logFrom: older === undefined ? 1 : older + 1 }, 'registry snapshot written')
  }

  /**
   * The newest complete, verified snapshot with seq ≥ `min` (older ones, and any that fail
   * to verify, skipped with an error reported), or undefined when there is none.
   */
  async load (min: number): Promise<SnapshotState | undefined> {
    const seqs = await this.#c.call('listing registry snapshots', async () => await this.store.complete())
    for (const seq of seqs) {
      if (seq < min) break
      try {
        const s = await this.#c.call('reading a registry snapshot', async () => await this.store.read(seq))
        this.#metrics?.snapshots.inc({ event: 'loaded' })
        this.#c.logger.info({ seq }, 'registry snapshot loaded')
        return s
      } catch (err) {
        if (!(err instanceof RegistrySnapshotError)) throw err
        this.#metrics?.snapshots.inc({ event: 'invalid' })
        this.#onError(err)
      }
    }
    return undefined
  }

  /** Let a write in progress finish (or fail) before the connection goes. */
  async close (): Promise<void> {
    this.#closed = true
    await this.#writing
  }
}
