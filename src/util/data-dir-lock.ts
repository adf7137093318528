/**
 * One process per data dir (issue 12): a hub or edge takes
 * `${dataDir}/edgefabric.lock` at start and a second process on the same
 * directory is refused with EF_DATA_DIR_LOCKED naming the holder's PID
 * (observed before: two edges on one dir replaced each other's session once
 * a second, and two writers of one binding file lose each other's changes).
 *
 * The lock file is created with link(2) from a complete temp file, so it
 * appears atomically with its content. A lock whose PID is no longer alive
 * on this boot (crash, kill -9) is stale and taken over. The holder may add
 * facts for other processes (the hub's admin URL, so offline CLI verbs can
 * turn to the running hub instead of writing its files).
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, unlinkSync } from 'node:fs'
import { link, readFile, unlink, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { DataDirLockedError } from '../errors.js'

export const LOCK_FILE = 'edgefabric.lock'

export interface LockInfo {
  pid: number
  role: string
  /** Linux boot id: a PID from another boot is never alive. */
  boot?: string
  startedAt: number
  /** Admin base URL of the holder, when it serves one. */
  admin?: string
}

export interface DataDirLock {
  readonly file: string
  readonly info: LockInfo
  /** Rewrite the lock's content (same holder), e.g. to add the admin URL. */
  update (extra: Partial<Pick<LockInfo, 'admin'>>): Promise<void>
  release (): Promise<void>
}

function bootId (): string | undefined {
  try { return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() } catch { return undefined }
}

function alive (info: LockInfo): boolean {
  const boot = bootId()
  if (info.boot !== undefined && boot !== undefined && info.boot !== boot) return false
  try {
    process.kill(info.pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The current holder, or undefined when the dir is free (or the lock stale). */
export async function readLock (dataDir: string): Promise<LockInfo | undefined> {
  let text: string
  try {
    text = await readFile(join(dataDir, LOCK_FILE), 'utf8')
  } catch {
    return undefined
  }
  try {
    const info = JSON.parse(text) as LockInfo
    if (typeof info.pid !== 'number') return undefined
    return alive(info) ? info : undefined
  } catch {
    return undefined
  }
}

const held = new Set<string>()
let exitHook = false

/** Take the lock or throw DataDirLockedError. */
export async function lockDataDir (dataDir: string, role: string): Promise<DataDirLock> {
  const file = join(dataDir, LOCK_FILE)
  const boot = bootId()
  const info: LockInfo = { pid: process.pid, role, startedAt: Date.now(), ...(boot !== undefined ? { boot } : {}) }
  const write = async (i: LockInfo): Promise<void> => {
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, JSON.stringify(i) + '\n', { mode: 0o644 })
    return await link(tmp, file).finally(() => unlink(tmp).catch(() => {}))
  }
  for (let attempt = 0; ; attempt++) {
    try {
      await write(info)
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let holder: LockInfo | undefined
    let text = ''
    try {
      text = await readFile(file, 'utf8')
      holder = JSON.parse(text) as LockInfo
    } catch {}
    if (holder !== undefined && typeof holder.pid === 'number' && alive(holder) && !(holder.pid === process.pid && !held.has(file))) {
      throw new DataDirLockedError(dataDir, holder.pid, `a running edgefabric ${holder.role}`)
    }
    if (attempt >= 3) throw new DataDirLockedError(dataDir, holder?.pid, 'another process (the lock keeps changing)')
    // Stale (dead holder, or unreadable half-written junk): remove it, if it
    // is still the one we looked at, and try again.
    const now = await readFile(file, 'utf8').catch(() => undefined)
    if (now === text) await unlink(file).catch(() => {})
  }
  held.add(file)
  if (!exitHook) {
    exitHook = true
    // A process that exits without release() (process.exit on a second
    // signal) must not leave a lock naming a live-looking PID for long.
    process.once('exit', () => { for (const f of held) { try { unlinkSync(f) } catch {} } })
  }
  let current = info
  return {
    file,
    info,
    async update (extra) {
      current = { ...current, ...extra }
      const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`
      await writeFile(tmp, JSON.stringify(current) + '\n', { mode: 0o644 })
      await rename(tmp, file)
    },
    async release () {
      if (!held.delete(file)) return
      try {
        const text = await readFile(file, 'utf8')
        if ((JSON.parse(text) as LockInfo).pid === process.pid) await unlink(file)
      } catch {}
    }
  }
}
