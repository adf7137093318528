/**
 * Wire messages of the ACK lane (DESIGN.md §5). They travel as envelopes in
 * group `$reliable`: data batches on the `normal` channel (one ordered stream,
 * so cumulative acks are meaningful), acks/nacks/resume on `control` so they
 * are never queued behind data.
 *
 *   resume {r}        "I have durably received from you everything up to seq r"
 *                     (sent by both sides as soon as a session is up)
 *   data   {s, m}     records with seqs s[i] and encoded envelopes m[i], in seq order
 *   ack    {u}        cumulative: everything up to seq u is durable here
 *   nack   {s, c, r}  seq s was rejected (code c, reason r); the sender counts it
 *   rewind {f}        on the data channel after a nack: data before this marker was
 *                     sent before the sender heard of the rejection and is ignored;
 *                     data after it resends from seq f
 */
import { newMessage, type Envelope } from '../codec/envelope.js'
import { ProtocolError } from '../errors.js'

export const RELIABLE_GROUP = '$reliable'

/**
 * nack code meaning "keep it, not now": the receiver has nobody to hand the
 * message to yet (a hub with no upstream consumer). The sender does NOT count
 * it as a rejection (no dead letter): it keeps the record in its durable
 * outbox and probes again with capped backoff, or at once when the receiver
 * sends `resume` (a consumer attached). Senders before this code counted it
 * as a rejection (dead letter after maxRejections).
 */
export const HOLD_CODE = 'EF_NO_CONSUMER'

export interface DataContent { s: number[], m: Uint8Array[] }

export function reliableMessage (operation: 'resume' | 'data' | 'ack' | 'nack' | 'rewind', content: unknown, source: string): Envelope {
  // data and rewind share the ordered data channel; the rest travel on control
  const priority = operation === 'data' || operation === 'rewind' ? 'normal' : 'control'
  return newMessage({ source, group: RELIABLE_GROUP, operation, resource: 'lane', content, priority })
}

export function isReliableMessage (env: Envelope): boolean {
  return env.router.group === RELIABLE_GROUP
}

function obj (env: Envelope): Record<string, unknown> {
  const c = env.content
  if (typeof c !== 'object' || c === null || c instanceof Uint8Array || Array.isArray(c)) {
    throw new ProtocolError(`reliable ${env.router.operation}: content must be an object`)
  }
  return c as Record<string, unknown>
}

function seq (v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ProtocolError(`reliable ${what}: not a sequence number`)
  return v
}

export function parseData (env: Envelope): DataContent {
  const o = obj(env)
  const s = o.s
  const m = o.m
  if (!Array.isArray(s) || !Array.isArray(m) || s.length !== m.length || s.length === 0) throw new ProtocolError('reliable data: s and m must be equal-length non-empty arrays')
  let prev = 0
  for (let i = 0; i < s.length; i++) {
    const v = seq(s[i], 'data')
    if (v <= prev) throw new ProtocolError('reliable data: seqs must increase')
    prev = v
    if (!(m[i] instanceof Uint8Array)) throw new ProtocolError('reliable data: messages must be bytes')
  }
  return { s: s as number[], m: m as Uint8Array[] }
}

export function parseSeqField (env: Envelope, field: 'r' | 'u' | 'f'): number {
  return seq(obj(env)[field], env.router.operation)
}

export function parseNack (env: Envelope): { s: number, c: string, r: string } {
  const o = obj(env)
  const c = o.c
  const r = o.r
  return { s: seq(o.s, 'nack'), c: typeof c === 'string' ? c : 'EF_REJECTED', r: typeof r === 'string' ? r : 'rejected' }
}
