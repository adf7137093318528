/**
 * One hub identity for the whole cluster, so one join token works against
 * every hub (issue 17). The identity is the four files src/hub/identity.ts
 * keeps in `dataDir/identity/` and edges pin: quic.key (QUIC peer id),
 * ca.crt + ca.key (the CA whose hash wss/https pins and tokens carry) and
 * token.key (signs join tokens). server.pem is derived and reissued per hub.
 *
 * Why in the cluster, encrypted (rather than only export/import): a hub
 * added during an incident should serve at once, with nothing to copy by
 * hand; JetStream already replicates it R3. The key material leaves the
 * hub only as AES-256-GCM ciphertext under a key derived (scrypt) from the
 * operator's `identitySecret`, so a NATS account that can read the bucket
 * still cannot mint tokens. Without a secret nothing secret is stored: the
 * bucket holds only the public fingerprints, every hub checks that its own
 * identity matches them (typed ClusterIdentityMismatchError otherwise) and
 * the operator copies `dataDir/identity/{quic.key,ca.crt,ca.key,token.key}`
 * to each hub — the export/import path.
 *
 * Order in Hub.start: adopt() before the identity is loaded (writes the
 * cluster's files into an empty dataDir), publish() after (the first hub's
 * identity becomes the cluster's: KV create is create-if-absent).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from 'node:crypto'
import { mkdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ensurePrivateDir, fsyncDir, writeSynced } from '../util/atomic-file.js'
import type { ClusterConnection } from './connection.js'
import { ClusterIdentityMismatchError } from './types.js'

const CORE = ['quic.key', 'ca.crt', 'ca.key', 'token.key'] as const
const KEY = 'hub'

interface Stored {
  v: 1
  /** sha256 over the four files, hex: what every hub compares. */
  digest: string
  salt?: string
  iv?: string
  tag?: string
  data?: string
}

async function readCore (dataDir: string): Promise<Map<string, Buffer> | undefined> {
  const files = new Map<string, Buffer>()
  for (const f of CORE) {
    try { files.set(f, await readFile(join(dataDir, 'identity', f))) } catch { return undefined }
  }
  return files
}

function digestOf (files: Map<string, Buffer>): string {
  const h = createHash('sha256')
  for (const f of CORE) { h.update(f); h.update((files.get(f) as Buffer)) }
  return h.digest('hex')
}

function keyFor (secret: string, salt: Buffer): Buffer {
  return scryptSync(secret, salt, 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 })
}

export class ClusterIdentity {
  readonly #c: ClusterConnection
  constructor (c: ClusterConnection) { this.#c = c }

  async #stored (): Promise<Stored | undefined> {
    const e = await this.#c.call('reading the cluster identity', async () => await this.#c.identity.get(KEY))
    if (e === null || e.operation !== 'PUT' || e.value.length === 0) return undefined
    return e.json<Stored>()
  }

  /** Before loading: if the cluster has an identity and dataDir has none, write it there. */
  async adopt (dataDir: string): Promise<'adopted' | 'local' | 'none'> {
    const stored = await this.#stored()
    const local = await readCore(dataDir)
    if (stored === undefined) return local === undefined ? 'none' : 'local'
    if (local !== undefined) {
      if (digestOf(local) !== stored.digest) {
        throw new ClusterIdentityMismatchError(`the hub identity in ${join(dataDir, 'identity')} differs from cluster ${this.#c.names.cluster}'s: move it away so this hub adopts the cluster's (edges pin the cluster's identity)`)
      }
      return 'local'
    }
    const secret = this.#c.options.identitySecret
    if (stored.data === undefined || secret === undefined) {
      throw new ClusterIdentityMismatchError(`cluster ${this.#c.names.cluster} has a hub identity that is not stored in the cluster${secret === undefined ? ' (or this hub has no cluster.identitySecret)' : ''}: copy dataDir/identity/{${CORE.join(',')}} from another hub`)
    }
    let plain: Buffer
    try {
      const d = createDecipheriv('aes-256-gcm', keyFor(secret, Buffer.from(stored.salt as string, 'base64')), Buffer.from(stored.iv as string, 'base64'))
      d.setAuthTag(Buffer.from(stored.tag as string, 'base64'))
      plain = Buffer.concat([d.update(Buffer.from(stored.data, 'base64')), d.final()])
    } catch {
      throw new ClusterIdentityMismatchError('cannot decrypt the cluster hub identity: cluster.identitySecret differs from the one it was stored with')
    }
    const obj = JSON.parse(plain.toString('utf8')) as Record<string, string>
    const files = new Map<string, Buffer>(CORE.map(f => [f, Buffer.from(obj[f] ?? '', 'base64')]))
    if (digestOf(files) !== stored.digest) throw new ClusterIdentityMismatchError('the cluster hub identity failed its digest check')
    // Same atomic pattern as src/hub/identity.ts: a staging dir renamed into place.
    await ensurePrivateDir(dataDir)
    const staging = join(dataDir, `.identity-staging-${randomBytes(6).toString('hex')}`)
    try {
      await mkdir(staging, { mode: 0o700 })
      for (const f of CORE) await writeSynced(join(staging, f), files.get(f) as Buffer)
      await fsyncDir(staging)
      await rename(staging, join(dataDir, 'identity'))
      await fsyncDir(dataDir)
    } finally {
      await rm(staging, { recursive: true, force: true }).catch(() => {})
    }
    return 'adopted'
  }

  /** After loading: make this identity the cluster's if it has none; otherwise check it is the same. */
  async publish (dataDir: string): Promise<void> {
    const local = await readCore(dataDir)
    if (local === undefined) throw new ClusterIdentityMismatchError(`no hub identity in ${join(dataDir, 'identity')}`)
    const digest = digestOf(local)
    const stored: Stored = { v: 1, digest }
    const secret = this.#c.options.identitySecret
    if (secret !== undefined) {
      const salt = randomBytes(16)
      const iv = randomBytes(12)
      const c = createCipheriv('aes-256-gcm', keyFor(secret, salt), iv)
      const obj = Object.fromEntries(CORE.map(f => [f, (local.get(f) as Buffer).toString('base64')]))
      const data = Buffer.concat([c.update(JSON.stringify(obj)), c.final()])
      Object.assign(stored, { salt: salt.toString('base64'), iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') })
    }
    try {
      await this.#c.call('storing the cluster identity', async () => await this.#c.identity.create(KEY, JSON.stringify(stored)))
    } catch (err) {
      const cur = await this.#stored()
      if (cur === undefined) throw err
      if (cur.digest !== digest) {
        throw new ClusterIdentityMismatchError(`cluster ${this.#c.names.cluster} already has another hub identity (two hubs started empty at once?): remove ${join(dataDir, 'identity')} and restart this hub to adopt it`)
      }
    }
  }
}
