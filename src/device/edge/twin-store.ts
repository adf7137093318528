/**
 * Durable device state at the edge (DESIGN.md §6, §8): twin records
 * (snapshot, reported values, edgeSeq, pending local expected, state) and
 * mapper grants, in an LMDB environment in `{dataDir}/devices`, next to the
 * embedded broker's persistence (sub-database `mqtt`). Reads come from an
 * in-memory copy loaded at open, so the edge serves twins offline and after
 * a restart; writes resolve once committed (group-committed by lmdb-js).
 */
import { mkdirSync } from 'node:fs'
import { open, type Database, type RootDatabase } from 'lmdb'
import { StoreError, toError } from '../../errors.js'
import type { MapperGrant } from '../protocol.js'
import type { TwinRecord } from './twin-state.js'

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
    this.#cache.set(id, rec)
    await this.#twins.put(id, rec)
    this.onChange(id)
  }

  async remove (id: string): Promise<void> {
    this.#cache.delete(id)
    await this.#twins.remove(id)
    this.onChange(id)
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
    await this.#root.close()
  }
}
