/**
 * The edge node's own key: Ed25519, created on first start in
 * `${dataDir}/identity/edge.key` (PKCS#8 PEM, mode 0600) and reused after.
 * The hub binds the node name to this key at first join (src/hub/bindings.ts)
 * and afterwards requires a signature over its challenge nonce.
 *
 * Signatures are domain-separated: the signed bytes are a fixed tag, the
 * caller's context string (e.g. `edgefabric/1 hello edge-1 <hub>`), and the
 * nonce, each length-prefixed, so a signature made for one purpose, session
 * or node can never verify for another.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { IdentityError, InvalidOptionError, toError } from '../errors.js'
import { createFileExclusive, ensurePrivateDir, fsyncDir, writeFileAtomic } from '../util/atomic-file.js'

export interface EdgeIdentity {
  /** The key file. */
  file: string
  privateKey: KeyObject
  publicKey: KeyObject
  /** Raw 32-byte Ed25519 public key (what hello carries). */
  publicKeyRaw: Uint8Array
  /** base64url of the first 16 bytes of sha256(publicKeyRaw). */
  keyId: string
  /** This call created the key. */
  created: boolean
}

export const EDGE_KEY_FILE = 'edge.key'
const SIGNATURE_TAG = Buffer.from('edgefabric node-key challenge v1\0')
export const MIN_NONCE_BYTES = 16
export const MAX_NONCE_BYTES = 1024
export const MAX_CONTEXT_BYTES = 1024

/** Load `${dataDir}/identity/edge.key`, creating it on first start. */
export async function loadOrCreateEdgeIdentity (dataDir: string): Promise<EdgeIdentity> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) throw new InvalidOptionError('dataDir', 'must be a non-empty path')
  const dir = join(dataDir, 'identity')
  const file = join(dir, EDGE_KEY_FILE)
  await ensurePrivateDir(dataDir)
  await ensurePrivateDir(dir)
  let pem = await readIfExists(file)
  let created = false
  if (pem === undefined) {
    const fresh = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
    // Exclusive create: if another process made a key meanwhile, use theirs.
    created = await createFileExclusive(file, fresh)
    pem = created ? fresh : await readIfExists(file)
    if (pem === undefined) throw new IdentityError(file, 'vanished while being created')
  }
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(pem)
  } catch (err) {
    throw new IdentityError(file, `is corrupt (not a PEM private key): ${toError(err).message}`, { cause: err })
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new IdentityError(file, `must hold an Ed25519 key, got ${privateKey.asymmetricKeyType ?? 'unknown'}`)
  }
  const publicKey = createPublicKey(privateKey)
  const publicKeyRaw = rawPublicKey(publicKey)
  return { file, privateKey, publicKey, publicKeyRaw, keyId: nodeKeyId(publicKeyRaw), created }
}

async function readIfExists (file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new IdentityError(file, `cannot be read: ${toError(err).message}`, { cause: err })
  }
}

/** Raw 32 bytes of an Ed25519 public key. */
export function rawPublicKey (key: KeyObject): Uint8Array {
  const jwk = key.export({ format: 'jwk' })
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new InvalidOptionError('publicKey', 'must be an Ed25519 key')
  return new Uint8Array(Buffer.from(jwk.x, 'base64url'))
}

/** KeyObject for a raw 32-byte Ed25519 public key; throws InvalidOptionError otherwise. */
export function publicKeyFromRaw (raw: Uint8Array): KeyObject {
  if (!(raw instanceof Uint8Array) || raw.length !== 32) throw new InvalidOptionError('publicKey', 'must be 32 raw Ed25519 bytes')
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' })
  } catch (err) {
    throw new InvalidOptionError('publicKey', 'is not an Ed25519 public key', { cause: err })
  }
}

/** Stable short id of a node key: base64url(sha256(raw)[0..16]) — 22 characters. */
export function nodeKeyId (publicKeyRaw: Uint8Array): string {
  if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) throw new InvalidOptionError('publicKey', 'must be 32 raw Ed25519 bytes')
  return createHash('sha256').update(publicKeyRaw).digest().subarray(0, 16).toString('base64url')
}

function u16 (n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/** The exact bytes signed: tag || len(context) || context || len(nonce) || nonce. */
function signedBytes (nonce: Uint8Array, context: string): Buffer | undefined {
  if (!(nonce instanceof Uint8Array) || nonce.length < MIN_NONCE_BYTES || nonce.length > MAX_NONCE_BYTES) return undefined
  if (typeof context !== 'string' || context.length === 0) return undefined
  const ctx = Buffer.from(context, 'utf8')
  if (ctx.length > MAX_CONTEXT_BYTES) return undefined
  return Buffer.concat([SIGNATURE_TAG, u16(ctx.length), ctx, u16(nonce.length), nonce])
}

/** Edge side: prove possession of the node key for this nonce and context. */
export function signChallenge (identity: Pick<EdgeIdentity, 'privateKey'>, nonce: Uint8Array, context: string): Uint8Array {
  const data = signedBytes(nonce, context)
  if (data === undefined) {
    throw new InvalidOptionError('challenge', `nonce must be ${MIN_NONCE_BYTES}-${MAX_NONCE_BYTES} bytes and context a non-empty string of at most ${MAX_CONTEXT_BYTES} bytes`)
  }
  return new Uint8Array(sign(null, data, identity.privateKey))
}

/**
 * Hub side: true only if `signature` is the key's signature over exactly this
 * nonce and context. Malformed input of any kind yields false, never a throw.
 */
export function verifyChallenge (publicKeyRaw: Uint8Array, nonce: Uint8Array, context: string, signature: Uint8Array): boolean {
  const data = signedBytes(nonce, context)
  if (data === undefined || !(signature instanceof Uint8Array) || signature.length !== 64) return false
  try {
    return verify(null, data, publicKeyFromRaw(publicKeyRaw), signature)
  } catch {
    return false
  }
}

/**
 * Key rotation files: a new key is written to `edge.key.next` first, the
 * rotation is confirmed by the hub, then `edge.key.next` is renamed over
 * `edge.key`. A crash in between leaves both; the edge then tries the next
 * key when the hub refuses the current one (src/edge/connector.ts).
 */
export const EDGE_NEXT_KEY_FILE = 'edge.key.next'

function identityFrom (file: string, pem: string, created: boolean): EdgeIdentity {
  const privateKey = createPrivateKey(pem)
  const publicKey = createPublicKey(privateKey)
  const publicKeyRaw = rawPublicKey(publicKey)
  return { file, privateKey, publicKey, publicKeyRaw, keyId: nodeKeyId(publicKeyRaw), created }
}

/** Create (replacing any older one) `edge.key.next`. */
export async function createNextEdgeKey (dataDir: string): Promise<EdgeIdentity> {
  const file = join(dataDir, 'identity', EDGE_NEXT_KEY_FILE)
  const pem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
  await writeFileAtomic(file, pem)
  return identityFrom(file, pem, true)
}

/** The pending next key, if a rotation was interrupted. */
export async function loadNextEdgeKey (dataDir: string): Promise<EdgeIdentity | undefined> {
  const file = join(dataDir, 'identity', EDGE_NEXT_KEY_FILE)
  const pem = await readIfExists(file)
  if (pem === undefined) return undefined
  try {
    return identityFrom(file, pem, false)
  } catch (err) {
    throw new IdentityError(file, `is corrupt: ${toError(err).message}; remove it`, { cause: err })
  }
}

/** Make the next key the key (atomic rename). */
export async function promoteNextEdgeKey (dataDir: string): Promise<void> {
  await rename(join(dataDir, 'identity', EDGE_NEXT_KEY_FILE), join(dataDir, 'identity', EDGE_KEY_FILE))
  await fsyncDir(join(dataDir, 'identity'))
}

export async function discardNextEdgeKey (dataDir: string): Promise<void> {
  await unlink(join(dataDir, 'identity', EDGE_NEXT_KEY_FILE)).catch(() => {})
}
