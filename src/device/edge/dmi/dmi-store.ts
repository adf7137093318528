/**
 * What DMI must not forget across edge restarts (issue 14): the registered
 * mappers (edgecore saves them in its meta DB too) and, per mapper, a
 * fingerprint of each device and model it has acknowledged. The latest
 * desired state itself lives in the twin store (committed before the cloud's
 * snapshot is acked), so "push the latest" is a level-triggered comparison
 * of the two that survives any crash; a change made while the mapper is
 * down coalesces into the next comparison. An LMDB environment of its own
 * in `{dataDir}/dmi`.
 */
import { mkdirSync } from 'node:fs'
import { open, type RootDatabase } from 'lmdb'
import { StoreError, toError } from '../../../errors.js'

export interface MapperRecord {
  name: string
  version: string
  apiVersion: string
  protocol: string
  /** The mapper's DeviceMapperService unix socket. */
  address: string
  state: string
  registeredAt: number
}

export type PushedKind = 'd' | 'm'

export class DmiStore {
  readonly #db: RootDatabase<unknown, string>
  #closed = false

  private constructor (db: RootDatabase<unknown, string>) { this.#db = db }

  static open (dir: string, durability: 'sync' | 'relaxed'): DmiStore {
    try {
      mkdirSync(dir, { recursive: true })
      return new DmiStore(open<unknown, string>({ path: dir, noSubdir: false, overlappingSync: false, noSync: durability === 'relaxed' }))
    } catch (err) {
      throw new StoreError(`cannot open the DMI store in ${dir}: ${toError(err).message}`, { cause: err })
    }
  }

  mappers (): MapperRecord[] {
    return [...this.#db.getRange({ start: 'mapper/', end: 'mapper0' })].map(e => e.value as MapperRecord)
  }

  async putMapper (m: MapperRecord): Promise<void> { await this.#db.put(`mapper/${m.protocol}`, m) }

  /** Fingerprints the mapper of `protocol` acknowledged: devices ('d') or models ('m'), by id. */
  pushed (protocol: string, kind: PushedKind): Map<string, string> {
    const prefix = `pushed/${protocol}/${kind}/`
    const out = new Map<string, string>()
    for (const { key, value } of this.#db.getRange({ start: prefix, end: prefix + '\uffff' })) out.set(key.slice(prefix.length), value as string)
    return out
  }

  async setPushed (protocol: string, kind: PushedKind, id: string, fp: string | undefined): Promise<void> {
    const key = `pushed/${protocol}/${kind}/${id}`
    if (fp === undefined) await this.#db.remove(key)
    else await this.#db.put(key, fp)
  }

  /** Replace everything acknowledged by the mapper of `protocol` (it registered and got this list), in one transaction. */
  async replacePushed (protocol: string, devices: Map<string, string>, models: Map<string, string>): Promise<void> {
    const prefix = `pushed/${protocol}/`
    await this.#db.transaction(() => {
      for (const key of [...this.#db.getKeys({ start: prefix, end: prefix + '\uffff' })]) void this.#db.remove(key)
      for (const [id, fp] of devices) void this.#db.put(`${prefix}d/${id}`, fp)
      for (const [id, fp] of models) void this.#db.put(`${prefix}m/${id}`, fp)
    })
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#db.close()
  }
}
