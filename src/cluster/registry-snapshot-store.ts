/**
 * Where registry snapshots (registry-snapshot.ts) live: stream
 * EF_<C>_REGISTRY_SNAP (file, R = the cluster's replicas, like the log), one
 * subject per piece so a snapshot is addressed by its seq S alone:
 *   `ef.<c>.regsnap.<S>.c.<i>`  chunk i (i = 0 .. chunks-1)
 *   `ef.<c>.regsnap.<S>.m`      manifest: S, chunk count, bytes, sha256
 * The manifest is published last, after every chunk's PubAck (stored on a
 * quorum), so a manifest names a complete snapshot; chunks without a manifest
 * (a writer killed half-way) are never read and are removed with the next
 * prune. max_msgs_per_subject 1: two hubs writing the same S publish
 * identical bytes to the same subjects, the second copy replaces the first.
 * Not under `ef.<c>.registry.>` (the log stream's subjects: overlap refused).
 */
import { headers as natsHeaders } from '@nats-io/transport-node'
import { DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import { toError } from '../errors.js'
import type { ClusterConnection } from './connection.js'
import { RegistrySnapshotError, SNAPSHOT_FORMAT, decodeState, encodeState, packManifest, sha256, unpackManifest, type Manifest, type SnapshotState } from './registry-snapshot.js'

/** Complete snapshots kept: the newest is loaded; the older one is the fallback (and the log is kept from it). */
export const KEEP_SNAPSHOTS = 2

export class SnapshotStore {
  readonly #c: ClusterConnection
  readonly stream: string
  readonly #prefix: string
  readonly #chunkBytes: number

  constructor (c: ClusterConnection, logStream: string, chunkBytes: number) {
    this.#c = c
    this.stream = `${logStream}_SNAP`
    this.#prefix = `${c.names.prefix}.regsnap`
    this.#chunkBytes = chunkBytes
  }

  async ensureStream (): Promise<void> {
    const jsm = this.#c.jsm
    await this.#c.call('creating the registry snapshot stream', async () => {
      try {
        await jsm.streams.info(this.stream)
        return
      } catch (err) {
        if (!/not found/i.test((err as Error).message)) throw err
      }
      try {
        await jsm.streams.add({
          name: this.stream,
          subjects: [`${this.#prefix}.>`],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          num_replicas: this.#c.options.replicas,
          max_msgs_per_subject: 1,
          discard: DiscardPolicy.Old
        })
      } catch (err) {
        if (!/already in use|exists/i.test((err as Error).message)) throw err
      }
    })
  }

  /** Seqs of the snapshots that have a manifest, newest first. */
  async complete (): Promise<number[]> {
    return [...(await this.#subjects(`${this.#prefix}.*.m`)).keys()].sort((a, b) => b - a)
  }

  /**
   * Write the snapshot unless one for its seq is there or being written: 'exists' (manifest
   * found), 'busy' (another hub published chunk 0 under the same Msg-Id within the duplicate
   * window: it is writing identical bytes), or the manifest written.
   */
  async write (state: SnapshotState): Promise<'written' | 'exists' | 'busy'> {
    const S = state.seq
    if (await this.#get(`${this.#prefix}.${S}.m`) !== null) return 'exists'
    const bytes = encodeState(state)
    const max = Math.max(1024, Math.min(this.#chunkBytes, Math.floor((this.#c.nc.info?.max_payload ?? 1024 * 1024) / 2)))
    const chunks: Uint8Array[] = []
    for (let at = 0; at < bytes.length || chunks.length === 0; at += max) chunks.push(bytes.subarray(at, at + max))
    const timeout = this.#c.options.timeoutMs
    for (let i = 0; i < chunks.length; i++) {
      const ack = await this.#c.js.publish(`${this.#prefix}.${S}.c.${i}`, chunks[i], { msgID: `ef-regsnap-${S}-${i}`, timeout, headers: this.#headers() })
      if (i === 0 && ack.duplicate) return 'busy'
    }
    const m: Manifest = { f: SNAPSHOT_FORMAT, seq: S, chunks: chunks.length, bytes: bytes.length, sha256: sha256(chunks), at: Date.now() }
    await this.#c.js.publish(`${this.#prefix}.${S}.m`, packManifest(m), { msgID: `ef-regsnap-${S}-m`, timeout, headers: this.#headers() })
    return 'written'
  }

  /** Read and verify the snapshot at `seq` (manifest, every chunk, size, checksum, body). */
  async read (seq: number): Promise<SnapshotState> {
    const mm = await this.#get(`${this.#prefix}.${seq}.m`)
    if (mm === null) throw new RegistrySnapshotError(`registry snapshot ${seq}: no manifest`)
    let m: Manifest
    try { m = unpackManifest(mm) } catch (err) { throw new RegistrySnapshotError(`registry snapshot ${seq}: unreadable manifest`, { cause: err }) }
    if (m.f !== SNAPSHOT_FORMAT || m.seq !== seq || !Number.isSafeInteger(m.chunks) || m.chunks < 1) {
      throw new RegistrySnapshotError(`registry snapshot ${seq}: manifest not understood (format ${String(m.f)}, seq ${String(m.seq)}, chunks ${String(m.chunks)})`)
    }
    const chunks: Uint8Array[] = []
    for (let i = 0; i < m.chunks; i++) {
      const c = await this.#get(`${this.#prefix}.${seq}.c.${i}`)
      if (c === null) throw new RegistrySnapshotError(`registry snapshot ${seq}: chunk ${i} of ${m.chunks} missing`)
      chunks.push(c)
    }
    const bytes = chunks.reduce((n, c) => n + c.length, 0)
    if (bytes !== m.bytes || sha256(chunks) !== m.sha256) throw new RegistrySnapshotError(`registry snapshot ${seq}: ${bytes} bytes / checksum do not match its manifest (${m.bytes} bytes)`)
    try {
      return decodeState(Buffer.concat(chunks), seq)
    } catch (err) {
      if (err instanceof RegistrySnapshotError) throw err
      throw new RegistrySnapshotError(`registry snapshot ${seq}: body not readable: ${toError(err).message}`, { cause: err })
    }
  }

  /**
   * Keep the KEEP_SNAPSHOTS newest complete snapshots; remove older ones and any chunks
   * without a manifest below the newest (half-written). Returns the kept seqs, newest first.
   */
  async prune (): Promise<number[]> {
    const all = await this.#subjects(`${this.#prefix}.>`)
    const complete = [...all].filter(([, subs]) => subs.has('m')).map(([s]) => s).sort((a, b) => b - a)
    const keep = complete.slice(0, KEEP_SNAPSHOTS)
    const newest = keep[0] ?? 0
    for (const s of all.keys()) {
      if (keep.includes(s) || s >= newest) continue // at or above the newest: possibly being written now
      await this.#c.jsm.streams.purge(this.stream, { filter: `${this.#prefix}.${s}.>` })
    }
    return keep
  }

  /** Snapshot seq → the last subject tokens present (`m`, `c`). */
  async #subjects (filter: string): Promise<Map<number, Set<string>>> {
    const info = await this.#c.jsm.streams.info(this.stream, { subjects_filter: filter })
    const out = new Map<number, Set<string>>()
    for (const subj of Object.keys(info.state.subjects ?? {})) {
      const t = subj.slice(this.#prefix.length + 1).split('.')
      const s = Number(t[0])
      if (!Number.isSafeInteger(s) || s < 1) continue
      let set = out.get(s)
      if (set === undefined) { set = new Set(); out.set(s, set) }
      set.add(t[1] ?? '')
    }
    return out
  }

  async #get (subject: string): Promise<Uint8Array | null> {
    const m = await this.#c.jsm.streams.getMessage(this.stream, { last_by_subj: subject })
    return m === null ? null : m.data
  }

  #headers (): ReturnType<typeof natsHeaders> {
    const h = natsHeaders()
    h.set('Ef-Registry-Snapshot', String(SNAPSHOT_FORMAT))
    return h
  }
}
