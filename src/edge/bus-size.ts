/**
 * Cheap byte estimate of an envelope for mailbox byte bounds.
 *
 * Encoding every message just to measure it would double the CPU cost of the
 * bus, so this walks the value with a node budget instead. It is an estimate:
 * strings count UTF-16 code units (exact for ASCII, low for CJK by up to 3x),
 * binary counts its byteLength exactly (binary is what gets big), numbers 9
 * bytes as in msgpack. Past the budget, nested containers are charged a flat
 * amount instead of being walked, so a pathological object costs bounded time.
 * Pass `sizeOf` to ModuleBus to replace it (e.g. with the wire size the edge
 * runtime already knows).
 */
import type { Envelope } from '../codec/envelope.js'

/** Fixed cost of header/router bookkeeping, roughly the codec's binary header. */
const ENVELOPE_OVERHEAD = 64
/** Nodes visited before falling back to flat charges. */
const NODE_BUDGET = 2048
/** Charged for a container not walked because the budget ran out. */
const UNWALKED_CONTAINER = 256

export function estimateEnvelopeBytes (env: Envelope): number {
  const h = env.header
  const r = env.router
  let n = ENVELOPE_OVERHEAD + h.id.length + r.source.length + r.group.length + r.resource.length + String(r.operation).length
  if (h.parentId !== undefined) n += h.parentId.length
  if (h.resourceVersion !== undefined) n += h.resourceVersion.length
  if (r.destination !== undefined) n += r.destination.length
  const budget = { left: NODE_BUDGET }
  return n + valueBytes(env.content, budget)
}

function valueBytes (v: unknown, budget: { left: number }): number {
  budget.left--
  switch (typeof v) {
    case 'string': return v.length + 1
    case 'number': case 'bigint': return 9
    case 'boolean': case 'undefined': return 1
    case 'object': break
    default: return 1 // functions/symbols are dropped by the codec
  }
  if (v === null) return 1
  if (ArrayBuffer.isView(v)) return v.byteLength + 5
  if (v instanceof ArrayBuffer) return v.byteLength + 5
  if (v instanceof Date) return 9
  if (budget.left <= 0) return UNWALKED_CONTAINER
  let n = 5
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      n += valueBytes(v[i], budget)
      // Out of budget: extrapolate the rest of the array from the part seen.
      if (budget.left <= 0 && i + 1 < v.length) return n + Math.ceil((n / (i + 1)) * (v.length - i - 1))
    }
    return n
  }
  for (const key in v as Record<string, unknown>) {
    if (!Object.prototype.hasOwnProperty.call(v, key)) continue
    n += key.length + 1 + valueBytes((v as Record<string, unknown>)[key], budget)
    if (budget.left <= 0) return n + UNWALKED_CONTAINER
  }
  return n
}
