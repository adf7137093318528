/**
 * The tiny application protocol of the transport loopback benchmark, shared by
 * the client (bench/transport-loopback.ts) and the echo server
 * (bench/loopback-server.ts, or in-process for memory://).
 *
 * - `query` (any channel): answered with a `response` (parentId = request id)
 *   carrying the same content, on the channel it arrived on.
 * - `upload` on `bulk`: payload bytes are counted per connection, nothing sent back.
 * - `bulk-end` on `bulk`: sent after the last upload; because order is kept
 *   within a channel, its answer (content {@link BulkReport}) proves the server
 *   has received and decoded every byte before it.
 *
 * Every message is a real envelope (fresh UUID, codec encode/decode on both
 * sides), so the numbers include the fabric's own per-message costs.
 */
import { newMessage, newResponse, type Envelope } from '../../src/codec/envelope.js'
import { listen } from '../../src/transport/index.js'
import type { Channel, Connection, ListenOptions, Listener } from '../../src/transport/types.js'

export const OP_QUERY = 'query'
export const OP_UPLOAD = 'upload'
export const OP_BULK_END = 'bulk-end'

/** What the server reports for one bulk transfer. */
export interface BulkReport { bytes: number, messages: number }

export function requestEnvelope (content: Uint8Array): Envelope {
  return newMessage({ source: 'bench-client', group: 'bench', operation: OP_QUERY, resource: 'bench/rr/echo', sync: true, content })
}

export function uploadEnvelope (content: Uint8Array): Envelope {
  return newMessage({ source: 'bench-client', group: 'bench', operation: OP_UPLOAD, resource: 'bench/bulk/blob', priority: 'bulk', content })
}

export function bulkEndEnvelope (): Envelope {
  return newMessage({ source: 'bench-client', group: 'bench', operation: OP_BULK_END, resource: 'bench/bulk/blob', sync: true, priority: 'bulk', content: null })
}

function safeSend (conn: Connection, env: Envelope, channel: Channel): void {
  try {
    conn.send(env, { channel })
  } catch {
    // closing or over the hard bound: the client notices (timeout) and reports it
  }
}

/** Server side of one connection: echo queries, count uploads, report on bulk-end. */
export function serveConnection (conn: Connection): void {
  let bytes = 0
  let messages = 0
  conn.on('message', (env, channel) => {
    const op = env.router.operation
    if (op === OP_UPLOAD) {
      const c = env.content
      bytes += c instanceof Uint8Array ? c.byteLength : 0
      messages++
    } else if (op === OP_QUERY) {
      safeSend(conn, newResponse(env, env.content, 'bench-server'), channel)
    } else if (op === OP_BULK_END) {
      const report: BulkReport = { bytes, messages }
      bytes = 0
      messages = 0
      // Answer on control: the bulk channel back to the client is idle anyway,
      // and control is what an application would use for such an ack.
      safeSend(conn, newResponse(env, report, 'bench-server'), 'control')
    }
  })
}

export interface ServerInfo {
  url: string
  identity: string | undefined
  /** WebTransport only: `http3` or `http2` (the TCP fallback). */
  mode?: string
}

/** Listen on `url` and serve the bench protocol. wss:// gets a fresh self-signed certificate. */
export async function startLoopbackServer (url: string): Promise<{ info: ServerInfo, listener: Listener }> {
  const options: ListenOptions = { onConnection: serveConnection }
  if (url.startsWith('wss:')) {
    const { generateSelfSignedCertificate } = await import('../../src/identity/tls.js')
    options.identity = await generateSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] })
  }
  const listener = await listen(url, options)
  const info: ServerInfo = { url: listener.url, identity: listener.identity }
  const mode = (listener as { webtransportMode?: unknown }).webtransportMode
  if (typeof mode === 'string') info.mode = mode
  return { info, listener }
}
