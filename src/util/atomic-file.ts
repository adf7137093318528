/**
 * Small durable-file helpers for identity material and the node binding
 * store. Writes go to a temp file that is fsynced, then renamed over the
 * target, then the directory is fsynced: after a crash a reader sees either
 * the old file or the new one, never a torn mix (a stale `.tmp` may remain
 * and is never read).
 */
import { randomBytes } from 'node:crypto'
import { link, mkdir, open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { IdentityError, toError } from '../errors.js'

/** Private material: owner read/write only. */
export const PRIVATE_FILE_MODE = 0o600
export const PRIVATE_DIR_MODE = 0o700

export async function ensurePrivateDir (dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE })
  } catch (err) {
    throw new IdentityError(dir, `cannot create directory: ${toError(err).message}`, { cause: err })
  }
}

/** fsync a directory so a rename/link inside it survives power loss. */
export async function fsyncDir (dir: string): Promise<void> {
  let fh
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } catch (err) {
    // Some filesystems refuse fsync on directories (EINVAL/EISDIR); the data
    // itself was already synced, so this only weakens the rename's durability.
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err
  } finally {
    await fh?.close()
  }
}

/** Write `data` to `path` (created with `mode`), fsynced, no rename. */
export async function writeSynced (path: string, data: string | Uint8Array, mode = PRIVATE_FILE_MODE): Promise<void> {
  const fh = await open(path, 'w', mode)
  try {
    await fh.writeFile(data)
    // `mode` only applies when open() creates the file; a stale temp file
    // left by a crash keeps its old mode unless we set it explicitly.
    await fh.chmod(mode)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

function tmpName (path: string): string {
  return `${path}.${randomBytes(4).toString('hex')}.tmp`
}

/** Atomically replace `path` with `data`. Errors become IdentityError naming `path`. */
export async function writeFileAtomic (path: string, data: string | Uint8Array, mode = PRIVATE_FILE_MODE): Promise<void> {
  const tmp = tmpName(path)
  try {
    await writeSynced(tmp, data, mode)
    await rename(tmp, path)
    await fsyncDir(dirname(path))
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw new IdentityError(path, `cannot write: ${toError(err).message}`, { cause: err })
  }
}

/**
 * Create `path` with `data` only if it does not exist yet (link(2) refuses
 * to overwrite). Returns false when another writer got there first, so
 * concurrent first starts converge on one key instead of clobbering.
 */
export async function createFileExclusive (path: string, data: string | Uint8Array, mode = PRIVATE_FILE_MODE): Promise<boolean> {
  const tmp = tmpName(path)
  try {
    await writeSynced(tmp, data, mode)
    try {
      await link(tmp, path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw err
    }
    await fsyncDir(dirname(path))
    return true
  } catch (err) {
    throw new IdentityError(path, `cannot create: ${toError(err).message}`, { cause: err })
  } finally {
    await unlink(tmp).catch(() => {})
  }
}
