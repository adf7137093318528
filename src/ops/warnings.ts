/**
 * Warnings shown by the console and /api/info of both roles: conditions an
 * operator should act on before they become an outage.
 */
import { statfs } from 'node:fs/promises'

/** What diskWarning reads of the file system (fs.statfs's fields); injectable for tests. */
export interface FsSpace { bavail: number, bsize: number, blocks: number }

export interface DiskWarningOptions {
  statfs?: (dir: string) => Promise<FsSpace>
  /** Warn below this share of the file system free. @default 0.1 */
  minFreeRatio?: number
  /** Warn below this many bytes free, whatever the share (a 1 TB disk at 10 % still has room; a 4 GB card at 30 % may not). @default 1 GiB */
  minFreeBytes?: number
}

/** Free space of the file system holding `dir`: a warning below 10 % or 1 GiB (LMDB fails writes, not reads, when it is full). */
export async function diskWarning (dir: string, o: DiskWarningOptions = {}): Promise<string | undefined> {
  let s: FsSpace
  try {
    s = await (o.statfs ?? statfs)(dir)
  } catch {
    return undefined
  }
  const free = s.bavail * s.bsize
  const total = s.blocks * s.bsize
  if (total > 0 && (free / total < (o.minFreeRatio ?? 0.1) || free < (o.minFreeBytes ?? 1024 ** 3))) {
    return `disk nearly full: ${(free / 1024 ** 3).toFixed(1)} GiB free of ${(total / 1024 ** 3).toFixed(1)} GiB on the data directory's file system (${dir})`
  }
  return undefined
}

/** A credential or certificate expiring within `withinMs` (or expired). */
export function expiryWarning (what: string, expiresAt: number | undefined, now: number, withinMs = 7 * 86_400_000): string | undefined {
  if (expiresAt === undefined) return undefined
  if (expiresAt <= now) return `${what} expired at ${new Date(expiresAt).toISOString()}`
  if (expiresAt - now < withinMs) return `${what} expires soon (${new Date(expiresAt).toISOString()})`
  return undefined
}

/** A join token as the hub's token store records it (the fields the warning reads). */
export interface JoinTokenLike { node: string, reusable: boolean, exp: number, useCount: number, revokedAt?: number | undefined }

const HOUR = 3_600_000
const SHOWN = 5

/**
 * Join tokens about to expire while they still matter: a reusable token
 * (provisioning images carry it) within 7 days, a single-use token no node has
 * joined with yet within 1 hour. Used or revoked tokens and expired ones are
 * left out: nothing waits on them. One line naming at most five.
 */
export function tokenExpiryWarning (tokens: Iterable<JoinTokenLike>, now: number): string | undefined {
  const soon: Array<{ t: JoinTokenLike, at: number }> = []
  for (const t of tokens) {
    if (t.revokedAt !== undefined) continue
    const at = t.exp * 1000
    if (at <= now) continue
    if (t.reusable ? at - now < 7 * 24 * HOUR : t.useCount === 0 && at - now < HOUR) soon.push({ t, at })
  }
  if (soon.length === 0) return undefined
  soon.sort((a, b) => a.at - b.at)
  const named = soon.slice(0, SHOWN).map(({ t, at }) => `${t.reusable ? 'reusable' : 'unused'} token for ${t.node === '*' ? 'any node' : t.node} at ${new Date(at).toISOString()}`)
  const more = soon.length > SHOWN ? ` and ${soon.length - SHOWN} more` : ''
  return `join tokens expire soon: ${named.join('; ')}${more}: create new ones with "edgefabric token create" if nodes still need to join`
}
