/**
 * How operator and message verbs reach a hub (issue 12):
 *
 * - `--admin URL` (or a running hub found through its data dir's lock file,
 *   which names its admin URL): the hub's admin API, with `--admin-token`
 *   when the hub has one. The running hub is the only writer of its files.
 * - a stopped hub: the verb takes the data-dir lock itself and acts on the
 *   files (one writer at a time, src/util/data-dir-lock.ts).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, EdgeFabricError } from '../errors.js'
import { adminUrl, parseAdminAddress } from '../config/address.js'
import { lockDataDir, readLock } from '../util/data-dir-lock.js'
import { FileBindingStore } from '../hub/bindings.js'

export type Target = { kind: 'api', base: string, token: string | undefined } | { kind: 'dir', dataDir: string }

/** Pick the API (explicit --admin, or the running hub's) or the data dir. */
export async function resolveTarget (cfg: { admin?: string | undefined, adminToken?: string | undefined, dataDir: string }): Promise<Target> {
  // Without --admin-token, the token the hub generated into its data dir at first start (if readable).
  const token = cfg.adminToken === '' || cfg.adminToken === undefined
    ? await readFile(join(cfg.dataDir, 'admin-token'), 'utf8').then(s => s.trim() || undefined, () => undefined)
    : cfg.adminToken
  if (cfg.admin !== undefined && cfg.admin !== '') {
    return { kind: 'api', base: adminUrl(parseAdminAddress(cfg.admin, m => new ConfigError('--admin', 'admin', m))), token }
  }
  const holder = await readLock(cfg.dataDir)
  if (holder === undefined) return { kind: 'dir', dataDir: cfg.dataDir }
  if (holder.admin === undefined) {
    throw new EdgeFabricError('EF_DATA_DIR_LOCKED', `the ${holder.role} (pid ${holder.pid}) running on ${cfg.dataDir} has no admin server; stop it to act on its files, or restart it with --admin host:port`)
  }
  return { kind: 'api', base: holder.admin, token }
}

/** One JSON request to the admin API; an error answer becomes an EdgeFabricError with the hub's code. */
export async function adminRequest (t: { base: string, token: string | undefined }, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  let res: Response
  try {
    res = await fetch(new URL(path, t.base), {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(t.token !== undefined ? { authorization: `Bearer ${t.token}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs)
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
    throw new EdgeFabricError('EF_ADMIN_UNREACHABLE', `cannot reach the hub admin API at ${t.base} (${cause}); is the hub running, and is --admin right?`)
  }
  const text = await res.text()
  let json: any // eslint-disable-line @typescript-eslint/no-explicit-any
  try { json = text === '' ? {} : JSON.parse(text) } catch { json = { error: { code: 'EF_BAD_ANSWER', message: text.slice(0, 200) } } }
  if (!res.ok) {
    const e = json?.error ?? {}
    const hint = res.status === 401 ? ' (give the hub\'s admin token with --admin-token or EDGEFABRIC_ADMIN_TOKEN)' : ''
    throw new EdgeFabricError(typeof e.code === 'string' ? e.code : `EF_HTTP_${res.status}`, `${typeof e.message === 'string' ? e.message : `HTTP ${res.status}`}${hint}`)
  }
  return json
}

/** First positional argument (not a flag), and the rest. */
export function positional (argv: readonly string[]): [string | undefined, string[]] {
  const first = argv[0]
  if (first === undefined || first.startsWith('-')) return [undefined, [...argv]]
  return [first, argv.slice(1)]
}

/** A stopped hub's binding store, under the data-dir lock (one writer at a time), closed afterwards. */
export async function withStoppedHubBindings<T> (dataDir: string, fn: (store: FileBindingStore) => Promise<T>): Promise<T> {
  const lock = await lockDataDir(dataDir, 'cli')
  try {
    const store = await FileBindingStore.open(dataDir)
    try { return await fn(store) } finally { await store.close() }
  } finally {
    await lock.release()
  }
}
