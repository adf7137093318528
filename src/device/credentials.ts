/**
 * Device / mapper MQTT credentials (DESIGN.md §9). The cloud issues a random
 * secret once and keeps only a salted scrypt hash; the hash is what travels to
 * the edge, so a stolen edge store does not reveal device passwords.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'

const scrypt = promisify(scryptCb) as (password: string | Buffer, salt: Buffer, keylen: number, options: { N: number, r: number, p: number }) => Promise<Buffer>

// N=2^14 keeps one check ≈ 20–40 ms on this machine kind: cheap enough for a
// device CONNECT, costly enough for offline guessing of a leaked hash.
const PARAMS = { N: 1 << 14, r: 8, p: 1 }
const KEYLEN = 32

/** A new random secret, URL-safe, 32 bytes of entropy. */
export function newSecret (): string {
  return randomBytes(32).toString('base64url')
}

export async function hashSecret (secret: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await scrypt(secret, salt, KEYLEN, PARAMS)
  return `scrypt$${salt.toString('base64')}$${hash.toString('base64')}`
}

/** Constant-time check of `secret` against a stored `scrypt$salt$hash`; false for malformed hashes. */
export async function verifySecret (secret: string | Buffer, stored: string): Promise<boolean> {
  const parts = stored.split('$')
  if (parts.length !== 3 || parts[0] !== 'scrypt') return false
  const salt = Buffer.from(parts[1] ?? '', 'base64')
  const expected = Buffer.from(parts[2] ?? '', 'base64')
  if (salt.length === 0 || expected.length !== KEYLEN) return false
  const actual = await scrypt(secret, salt, KEYLEN, PARAMS)
  return timingSafeEqual(actual, expected)
}
