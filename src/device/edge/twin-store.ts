/**
 * Durable device state at the edge (DESIGN.md §6, §8): twin records
 * (snapshot, reported values, edgeSeq, pending local expected, state) and
 * mapper grants, in an LMDB environment in `{dataDir}/devices`, next to the
 * embedded broker's persistence (sub-database `mqtt`). Reads come from an
 * in-memory copy loaded at open, so the edge serves twins offline and after
 * a restart; writes resolve once committed (group-committed by lmdb-js).
 *
 * Twin record writes are coalesced per event-loop turn (issue 16): the
 * engine pipelines a device's updates, so one MQTT read often carries several
 * updates of the same device. Each `put` updates the cache at once; the LMDB
 * write of a device's latest record is issued once, at the end of the turn,
 * and every `put` of that turn resolves when that write is committed. The
 * latest record holds every earlier change, so "resolved means on disk"
 * stays true for each of them, with one encode and one write instead of N.
 */
import { mkdirSync } from 'node:fs'
import { open, type Database, type RootDatabase } from 'lmdb'
import { StoreError, toError } from '../../errors.js'
import type { MapperGrant } from '../protocol.js'
import type { TwinRecord } from './twin-state.js'

interface Pending { rec: TwinRecord, waiters: Array<{ resolve: () => void, reject: (err: Error) => void }> }

export class TwinStore {
  readonly #root: RootDatabase
  readonly #twins: Database<TwinRecord, string>
  readonly #grants: Database<MapperGrant, string>
  readonly #meta: Database<unknown, string>
  /** Sub-database for the embedded broker (LmdbPersistence). */
  readonly mqttDb: Database
  readonly #cache = new Map<string, TwinRecord>()
  readonly #grantCache = new Map<string, MapperGrant>()
  #closed = false
  /** Records written this turn and not yet handed to LMDB, with the callers waiting on them. */
  #dirty = new Map<string, Pending>()
  #flushScheduled = false
  /** Called after every twin record write or removal, with the device id (DMI pushes, src/device/edge/dmi/). */
  onChange: (id: string) => void = () => {}

  private constructor (root: RootDatabase) {
    this.#root = root
    this.#twins = root.openDB<TwinRecord, string>({ name: 'twins' })
    this.#grants = root.openDB<MapperGrant, string>({ name: 'grants' })
    this.#meta = root.openDB<unknown, string>({ name: 'meta' })
    this.mqttDb = root.openDB({ name: 'mqtt' })
    for (const { key, value } of this.#twins.getRange({})) this.#cache.set(key, value)
    for (const { key, value } of this.#grants.getRange({})) this.#grantCache.set(key, value)
  }

  static open (dir: string, durability: 'sync' | 'relaxed'): TwinStore {
    try {
      mkdirSync(dir, { recursive: true })
      const root = open({ path: dir, noSubdir: false, maxDbs: 8, overlappingSync: false, noSync: durability === 'relaxed' })
      return new TwinStore(root)
    } catch (err) {
      throw new StoreError(`cannot open the device store in ${dir}: ${toError(err).message}`, { cause: err })
    }
  }

  get (id: string): TwinRecord | undefined { return this.#cache.get(id) }
  list (): TwinRecord[] { return [...this.#cache.values()] }
  get size (): number { return this.#cache.size }

  async put (rec: TwinRecord): Promise<void> {
    const id = `${rec.namespace}/${rec.name}`
    if (this.#closed) throw new StoreError(`device store closed; ${id} not written`)
    this.#cache.set(id, rec)
    await new Promise<void>((resolve, reject) => {
      const p = this.#dirty.get(id)
      if (p !== undefined) { p.rec = rec; p.waiters.push({ resolve, reject }); return }
      this.#dirty.set(id, { rec, waiters: [{ resolve, reject }] })
      if (!this.#flushScheduled) { this.#flushScheduled = true; setImmediate(() => { this.#flush() }) }
    })
  }

  async remove (id: string): Promise<void> {
    this.#flushOne(id) // a put of this turn goes first, so the removal is the last word
    this.#cache.delete(id)
    await this.#twins.remove(id)
    this.onChange(id)
  }

  /** Hand every record of this turn to LMDB (one group commit). */
  #flush (): void {
    this.#flushScheduled = false
    for (const id of [...this.#dirty.keys()]) this.#flushOne(id)
  }

  #flushOne (id: string): void {
    const p = this.#dirty.get(id)
    if (p === undefined) return
    this.#dirty.delete(id)
    this.#twins.put(id, p.rec).then(() => {
      for (const w of p.waiters) w.resolve()
      this.onChange(id)
    }, (err: unknown) => {
      const e = new StoreError(`device ${id} not written: ${toError(err).message}`, { cause: err })
      for (const w of p.waiters) w.reject(e)
    })
  }

  grant (name: string): MapperGrant | undefined { return this.#grantCache.get(name) }
  grants (): MapperGrant[] { return [...this.#grantCache.values()] }

  async putGrant (g: MapperGrant): Promise<void> {
    this.#grantCache.set(g.name, g)
    await this.#grants.put(g.name, g)
  }

  async removeGrant (name: string): Promise<void> {
    this.#grantCache.delete(name)
    await this.#grants.remove(name)
  }

  getMeta<T> (key: string): T | undefined { return this.#meta.get(key) as T | undefined }
  async putMeta (key: string, value: unknown): Promise<void> { await this.#meta.put(key, value) }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#flush()
    await this.#root.close()
  }
}
