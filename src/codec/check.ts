/**
 * Validation of an envelope before it is encoded (src/codec/codec.ts), so a
 * malformed envelope fails at the sender with an InvalidEnvelopeError naming
 * the field, instead of reaching the wire and failing (or worse, half
 * working) at the receiver. Each field is read exactly once.
 */
import type { Envelope } from './envelope.js'
import { InvalidEnvelopeError } from '../errors.js'

/** The checked header/router values, read once from the envelope. */
export interface CheckedFields {
  id: string
  parentId: string | undefined
  timestamp: number
  resourceVersion: string | undefined
  sync: boolean | undefined
  ttl: number | undefined
  /** Index in PRIORITIES, or -1 when not set. */
  priority: number
  source: string
  destination: string | undefined
  group: string
  operation: string
  resource: string
  /** Total UTF-8-relevant length (UTF-16 units) of the strings, to size the scratch buffer. */
  stringChars: number
}

function describe (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  return typeof v
}

function fail (field: string, expected: string, v: unknown): never {
  throw new InvalidEnvelopeError(field, `must be ${expected}, got ${describe(v)}`)
}

function priorityIndex (p: unknown): number {
  switch (p) {
    case undefined: return -1
    case 'control': return 0
    case 'high': return 1
    case 'normal': return 2
    case 'bulk': return 3
    default: return fail('header.priority', "one of 'control', 'high', 'normal', 'bulk'", p)
  }
}

export function checkEnvelope (envelope: Envelope): CheckedFields {
  if (typeof envelope !== 'object' || envelope === null) fail('envelope', 'an object', envelope)
  const header = envelope.header as unknown
  if (typeof header !== 'object' || header === null) fail('header', 'an object', header)
  const router = envelope.router as unknown
  if (typeof router !== 'object' || router === null) fail('router', 'an object', router)
  const h = header as Record<string, unknown>
  const r = router as Record<string, unknown>

  const id = h.id
  if (typeof id !== 'string' || id.length === 0) fail('header.id', 'a non-empty string', id)
  const timestamp = h.timestamp
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp)) fail('header.timestamp', 'a finite number', timestamp)
  const parentId = h.parentId
  if (parentId !== undefined && (typeof parentId !== 'string' || parentId.length === 0)) fail('header.parentId', 'a non-empty string', parentId)
  const resourceVersion = h.resourceVersion
  if (resourceVersion !== undefined && typeof resourceVersion !== 'string') fail('header.resourceVersion', 'a string', resourceVersion)
  const sync = h.sync
  if (sync !== undefined && typeof sync !== 'boolean') fail('header.sync', 'a boolean', sync)
  const ttl = h.ttl
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isFinite(ttl))) fail('header.ttl', 'a finite number', ttl)
  const priority = priorityIndex(h.priority)

  const source = r.source
  if (typeof source !== 'string') fail('router.source', 'a string', source)
  const destination = r.destination
  if (destination !== undefined && typeof destination !== 'string') fail('router.destination', 'a string', destination)
  const group = r.group
  if (typeof group !== 'string') fail('router.group', 'a string', group)
  const operation = r.operation
  if (typeof operation !== 'string') fail('router.operation', 'a string', operation)
  const resource = r.resource
  if (typeof resource !== 'string') fail('router.resource', 'a string', resource)

  const stringChars = id.length + source.length + group.length + operation.length + resource.length +
    (parentId?.length ?? 0) + (resourceVersion?.length ?? 0) + (destination?.length ?? 0)
  return { id, parentId, timestamp, resourceVersion, sync, ttl, priority, source, destination, group, operation, resource, stringChars }
}
