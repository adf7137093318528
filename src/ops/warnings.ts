/**
 * Warnings shown by the console and /api/info of both roles: conditions an
 * operator should act on before they become an outage.
 */
import { statfs } from 'node:fs/promises'

/** Free space of the file system holding `dir`: a warning below 10 % or 1 GiB. */
export async function diskWarning (dir: string): Promise<string | undefined> {
  try {
    const s = await statfs(dir)
    const free = s.bavail * s.bsize
    const total = s.blocks * s.bsize
    if (total > 0 && (free / total < 0.1 || free < 1024 ** 3)) {
      return `disk nearly full: ${(free / 1024 ** 3).toFixed(1)} GiB free of ${(total / 1024 ** 3).toFixed(1)} GiB on the data directory's file system (${dir})`
    }
  } catch {
    return undefined
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
