/**
 * Input validation and ordering rules shared by every ReliableStore
 * implementation, so MemoryStore and LmdbStore accept, refuse and order
 * exactly the same things (the compliance suite checks they agree).
 */
import { InvalidOptionError } from '../errors.js'
import { compareVersions, type InboundItem, type OutboxInput, type QuotaPolicy } from './store.js'

/**
 * Size limits. LMDB keys are at most 1978 bytes and the stores build keys
 * like [peer, resourceKey] and [peer, id]; these bounds keep every composite
 * key well inside that, and MemoryStore enforces the same so code tested
 * against it does not break on LMDB.
 */
export const LIMITS = {
  peerBytes: 256,
  keyBytes: 1024,
  idBytes: 512,
  versionBytes: 256,
  opBytes: 64
} as const

export const DEFAULT_DEDUP_WINDOW = 10_000
export const DEFAULT_MAX_DEAD_LETTERS = 100_000

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * A string usable inside a store key: non-empty, bounded, no NUL (LMDB's
 * ordered-binary key encoding uses NUL as the array delimiter) and well-formed
 * UTF-16 (a lone surrogate would not survive the UTF-8 round trip).
 */
/**
 * True when `s` is printable-range ASCII without NUL and at most `maxBytes`
 * long: then it is one UTF-8 byte per character, has no surrogate and no NUL,
 * and every check below passes. One pass over the characters instead of a
 * regex, a search and a byte count: these checks run per received message
 * (ids in commitInbound, the peer in hasInboundId; issue 16, drain).
 */
function isShortAscii (s: string, maxBytes: number): boolean {
  if (s.length > maxBytes) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0 || c >= 0x80) return false
  }
  return true
}

export function checkKeyString (name: string, value: unknown, maxBytes: number): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidOptionError(name, 'must be a non-empty string')
  if (isShortAscii(value, maxBytes)) return value
  if (value.includes('\u0000')) throw new InvalidOptionError(name, 'must not contain NUL characters')
  if (LONE_SURROGATE.test(value)) throw new InvalidOptionError(name, 'must be well-formed UTF-16 (lone surrogate)')
  const n = Buffer.byteLength(value, 'utf8')
  if (n > maxBytes) throw new InvalidOptionError(name, `must be at most ${maxBytes} UTF-8 bytes, got ${n}`)
  return value
}

function checkOptString (name: string, value: unknown, maxBytes: number): void {
  if (value === undefined) return
  if (typeof value !== 'string') throw new InvalidOptionError(name, 'must be a string')
  if (isShortAscii(value, maxBytes)) return
  if (LONE_SURROGATE.test(value)) throw new InvalidOptionError(name, 'must be well-formed UTF-16 (lone surrogate)')
  if (Buffer.byteLength(value, 'utf8') > maxBytes) throw new InvalidOptionError(name, `must be at most ${maxBytes} UTF-8 bytes`)
}

export function checkPeer (peer: unknown): string {
  return checkKeyString('peer', peer, LIMITS.peerBytes)
}

export function checkNumber (name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new InvalidOptionError(name, 'must be a number')
  return value
}

export function checkNow (now: unknown): number {
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new InvalidOptionError('now', 'must be a finite number (ms since the epoch)')
  return now
}

export function checkQuota (q: QuotaPolicy): void {
  if (typeof q !== 'object' || q === null) throw new InvalidOptionError('quota', 'must be an object')
  if (!Number.isSafeInteger(q.maxMessages) || q.maxMessages < 1) throw new InvalidOptionError('quota.maxMessages', 'must be an integer ≥ 1')
  if (!Number.isSafeInteger(q.maxBytes) || q.maxBytes < 1) throw new InvalidOptionError('quota.maxBytes', 'must be an integer ≥ 1')
  if (q.overflow !== 'reject' && q.overflow !== 'drop-oldest') throw new InvalidOptionError('quota.overflow', 'must be "reject" or "drop-oldest"')
}

export function checkOutboxInput (item: OutboxInput, i: number): void {
  const p = `items[${i}]`
  if (typeof item !== 'object' || item === null) throw new InvalidOptionError(p, 'must be an object')
  checkKeyString(`${p}.id`, item.id, LIMITS.idBytes)
  if (!(item.bytes instanceof Uint8Array)) throw new InvalidOptionError(`${p}.bytes`, 'must be a Uint8Array')
  if (item.key !== undefined) checkKeyString(`${p}.key`, item.key, LIMITS.keyBytes)
  checkOptString(`${p}.version`, item.version, LIMITS.versionBytes)
  checkOptString(`${p}.op`, item.op, LIMITS.opBytes)
  if (item.expiresAt !== undefined && (typeof item.expiresAt !== 'number' || !Number.isFinite(item.expiresAt))) {
    throw new InvalidOptionError(`${p}.expiresAt`, 'must be a finite number')
  }
}

export function checkInboundItem (item: InboundItem, i: number): void {
  if (typeof item === 'object' && item !== null && Number.isSafeInteger(item.seq) && item.seq >= 1 &&
    typeof item.id === 'string' && item.id.length > 0 && isShortAscii(item.id, LIMITS.idBytes) &&
    item.key === undefined && item.version === undefined && item.bytes === undefined &&
    (item.op === undefined || (typeof item.op === 'string' && isShortAscii(item.op, LIMITS.opBytes)))) return // the usual unversioned item: no field name built (issue 16, drain)
  const p = `items[${i}]`
  if (typeof item !== 'object' || item === null) throw new InvalidOptionError(p, 'must be an object')
  if (!Number.isSafeInteger(item.seq) || item.seq < 1) throw new InvalidOptionError(`${p}.seq`, 'must be an integer ≥ 1')
  checkKeyString(`${p}.id`, item.id, LIMITS.idBytes)
  if (item.key !== undefined) checkKeyString(`${p}.key`, item.key, LIMITS.keyBytes)
  checkOptString(`${p}.version`, item.version, LIMITS.versionBytes)
  checkOptString(`${p}.op`, item.op, LIMITS.opBytes)
  if (item.bytes !== undefined && !(item.bytes instanceof Uint8Array)) throw new InvalidOptionError(`${p}.bytes`, 'must be a Uint8Array')
}

export function isDeleteOp (op: string | undefined): boolean {
  return op === 'delete'
}

/**
 * Does (version, op) replace what is already there (pending in the outbox, or
 * stored as the resource)? The supersession and staleness rule, in one place:
 *  - either side without a version: arrival order decides, the newcomer wins
 *    (an unversioned resource has no other order);
 *  - otherwise compareVersions() decides ('9' < '10');
 *  - equal versions: only a delete replaces a non-delete. Deletes win ties so
 *    an update carrying the version the object had when it was deleted can
 *    never resurrect it, and a delete is never superseded by an older update.
 */
export function isNewer (version: string | undefined, op: string | undefined, curVersion: string | undefined, curOp: string | undefined): boolean {
  if (version === undefined || curVersion === undefined) return true
  const c = compareVersions(version, curVersion)
  if (c !== 0) return c > 0
  return isDeleteOp(op) && !isDeleteOp(curOp)
}

/**
 * Order of resource keys in listResources(): by Unicode code point, which is
 * the order of their UTF-8 bytes, i.e. LMDB's key order. (JS `<` compares
 * UTF-16 code units and differs for characters above U+FFFF.)
 */
export function compareKeys (a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    // A surrogate (≥ 0xD800 ≤ 0xDFFF) encodes a code point above 0xFFFF, so it sorts above 0xE000–0xFFFF.
    const xs = x >= 0xD800 && x <= 0xDFFF
    const ys = y >= 0xD800 && y <= 0xDFFF
    if (xs !== ys) return xs ? 1 : -1
    return x - y
  }
  return a.length - b.length
}
