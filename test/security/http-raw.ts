/**
 * A raw HTTP/1.1 client over net.Socket for the attack tests: it sends exactly
 * the bytes an attacker (or a browser acting for a hostile page) would, with
 * no client library filling in or fixing headers.
 */
import { connect } from 'node:net'

export interface RawResponse { status: number, headers: Record<string, string>, body: string }

/** Send `head` (request line + headers, without the final blank line) and `body`; read until the server closes. */
export async function rawRequest (baseUrl: string, head: string, body: string | Buffer = ''): Promise<RawResponse> {
  const u = new URL(baseUrl)
  const buf = typeof body === 'string' ? Buffer.from(body) : body
  const lines = head.trim().split('\n').map(l => l.trim())
  if (buf.length > 0) lines.push(`Content-Length: ${buf.length}`)
  lines.push('Connection: close')
  const raw = Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n'), buf])
  return await new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) })
    const chunks: Buffer[] = []
    s.on('data', c => chunks.push(c))
    s.on('error', reject)
    s.setTimeout(10_000, () => { s.destroy(new Error('raw request timed out')) })
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const [h = '', ...rest] = text.split('\r\n\r\n')
      const [statusLine = '', ...hl] = h.split('\r\n')
      const headers: Record<string, string> = {}
      for (const l of hl) { const i = l.indexOf(':'); if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim() }
      resolve({ status: Number(statusLine.split(' ')[1] ?? 0), headers, body: rest.join('\r\n\r\n') })
    })
    // No half-close: node's server may drop a request whose socket ended before an async handler answered.
    s.write(raw)
  })
}

/** Open a streaming GET and resolve with the status once the headers arrived; `close()` ends it. */
export async function rawStream (baseUrl: string, head: string): Promise<{ status: number, close: () => void }> {
  const u = new URL(baseUrl)
  return await new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) })
    let text = ''
    s.on('error', reject)
    s.on('data', c => {
      text += c.toString('utf8')
      if (text.includes('\r\n\r\n')) resolve({ status: Number(text.split(' ')[1] ?? 0), close: () => s.destroy() })
    })
    s.write(head.trim().split('\n').map(l => l.trim()).join('\r\n') + '\r\n\r\n')
  })
}
