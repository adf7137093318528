/**
 * Dead-letter routes, the same on both roles (issue 15: "list, show,
 * requeue, purge; each action is audited"). On the hub a dead letter belongs
 * to a node's outbox; on the edge to its one upstream outbox (peer `cloud`).
 *
 *   GET  /api/dead-letters?node=&limit=           newest first
 *   GET  /api/dead-letters/<peer>/<seq>           one dead letter
 *   POST /api/dead-letters/<peer>/<seq>/requeue   back into the outbox (audited)
 *   POST /api/dead-letters/purge  {node?, seqs?}  remove (audited)
 *
 * The admin server lets only the admin role reach a POST.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from './logger.js'
import { ApiError, audit, intParam, readJson, send, seqOf } from './api-util.js'

export interface DeadLetterView { peer: string, seq: number, id: string, key?: string, code: string, reason: string, at: number, size: number, requeueable?: boolean }

export interface DeadLetterSource {
  deadLetters (peer: string | undefined, limit: number): DeadLetterView[]
  /** Send the kept message again (a new outbox entry), then drop the dead letter; resolves to its new seq. */
  requeue?: (peer: string, seq: number) => Promise<{ seq: number }>
  purge?: (peer: string | undefined, seqs: number[] | undefined) => Promise<number>
}

/** Answers a dead-letter route (true), or false for any other path. `parts`: the path after /api/, split and decoded. */
export async function deadLetterRoutes (req: IncomingMessage, res: ServerResponse, path: string, parts: string[], query: URLSearchParams, src: DeadLetterSource, log: Logger): Promise<boolean> {
  if (parts[0] !== 'dead-letters') return false
  const get = req.method === 'GET' || req.method === 'HEAD'
  if (get && path === '/api/dead-letters') {
    const node = query.get('node') ?? undefined
    return send(res, 200, { items: src.deadLetters(node === '' ? undefined : node, intParam(query, 'limit', 100, 1, 1000)) })
  }
  if (get && parts.length === 3) return send(res, 200, findDead(src, parts[1] as string, seqOf(parts[2])))
  if (req.method === 'POST' && parts.length === 4 && parts[3] === 'requeue') {
    await readJson(req)
    const node = parts[1] as string
    const seq = seqOf(parts[2])
    const dead = findDead(src, node, seq)
    if (src.requeue === undefined) throw new ApiError(501, 'EF_NOT_SUPPORTED', 'this store cannot requeue dead letters')
    if (dead.requeueable !== true) throw new ApiError(409, 'EF_NOT_REQUEUEABLE', `dead letter ${node}/${seq} kept no message body (larger than 64 KiB, or recorded by an older version)`)
    let r: { seq: number }
    try {
      r = await src.requeue(node, seq)
    } catch (err) {
      throw new ApiError(409, 'EF_REQUEUE_FAILED', (err as Error).message)
    }
    audit(log, req, 'dead-letter-requeue', { node, seq, newSeq: r.seq })
    return send(res, 200, { requeued: { node, seq }, seq: r.seq })
  }
  if (req.method === 'POST' && path === '/api/dead-letters/purge') {
    const b = await readJson(req)
    const node = typeof b.node === 'string' && b.node !== '' ? b.node : undefined
    if (b.seqs !== undefined && (!Array.isArray(b.seqs) || !b.seqs.every(s => Number.isSafeInteger(s) && (s as number) > 0))) throw new ApiError(400, 'EF_BAD_REQUEST', 'seqs must be an array of sequence numbers')
    if (b.seqs !== undefined && node === undefined) throw new ApiError(400, 'EF_BAD_REQUEST', 'seqs need a node')
    if (src.purge === undefined) throw new ApiError(501, 'EF_NOT_SUPPORTED', 'this store cannot purge dead letters')
    const n = await src.purge(node, b.seqs as number[] | undefined)
    audit(log, req, 'dead-letter-purge', { node, seqs: b.seqs, removed: n })
    return send(res, 200, { purged: n })
  }
  return false
}

function findDead (src: DeadLetterSource, node: string, seq: number): DeadLetterView {
  const d = src.deadLetters(node, 100_000).find(x => x.seq === seq)
  if (d === undefined) throw new ApiError(404, 'EF_NOT_FOUND', `no dead letter ${node}/${seq}`)
  return d
}
