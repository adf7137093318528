/**
 * The DMI unix socket file (edgecore: criutil.CreateListener removes a stale
 * socket before listening). A leftover socket of a crashed edge is removed;
 * a socket another live process answers on, or a path that is not a socket,
 * is refused rather than taken over.
 */
import { connect } from 'node:net'
import { lstat, mkdir, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { EdgeFabricError } from '../../../errors.js'

export class DmiSocketError extends EdgeFabricError {
  static readonly code = 'EF_DMI_SOCKET'
  constructor (message: string, options?: { cause?: unknown }) { super(DmiSocketError.code, message, options) }
}

async function answers (path: string): Promise<boolean> {
  return await new Promise<boolean>(resolve => {
    const s = connect(path)
    const done = (v: boolean): void => { clearTimeout(t); s.destroy(); resolve(v) }
    const t = setTimeout(() => done(true), 1000) // connected but silent is still someone's socket
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

export async function prepareSocket (path: string): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true })
  } catch (err) {
    throw new DmiSocketError(`cannot create the directory of the DMI socket ${path}: ${(err as Error).message}`, { cause: err })
  }
  let st
  try {
    st = await lstat(path)
  } catch {
    return // nothing there
  }
  if (!st.isSocket()) throw new DmiSocketError(`${path} exists and is not a socket: refusing to replace it (option dmi.socket / --dmi-socket)`)
  if (await answers(path)) throw new DmiSocketError(`${path} is in use by another process (another edge or edgecore?)`)
  await unlink(path).catch(() => {})
}

export async function removeSocket (path: string): Promise<void> {
  try {
    if ((await lstat(path)).isSocket()) await unlink(path)
  } catch {}
}
