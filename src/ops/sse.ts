/**
 * Server-sent event streams of the admin API: bounded (64 streams in all, 8
 * for anonymous readers together), each with a keep-alive comment, closed
 * when the client goes away or the server closes. A stream may follow one
 * topic (a node id) for `detail` events.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

interface Stream { res: ServerResponse, principal: string, topic: string | undefined, keepAlive: NodeJS.Timeout }

export class SseHub {
  readonly #streams = new Set<Stream>()
  constructor (readonly maxStreams = 64, readonly maxAnonymous = 8, readonly keepAliveMs = 15_000) {}

  get size (): number { return this.#streams.size }

  /** Topics some stream follows. */
  topics (): Set<string> {
    const s = new Set<string>()
    for (const st of this.#streams) if (st.topic !== undefined) s.add(st.topic)
    return s
  }

  open (req: IncomingMessage, res: ServerResponse, principal: string, topic: string | undefined): void {
    const anon = [...this.#streams].filter(s => s.principal === 'anonymous').length
    if (this.#streams.size >= this.maxStreams || (principal === 'anonymous' && anon >= this.maxAnonymous)) {
      const body = JSON.stringify({ code: 'EF_TOO_MANY_STREAMS', message: `at most ${principal === 'anonymous' ? this.maxAnonymous : this.maxStreams} event streams for ${principal}` })
      res.writeHead(429, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) })
      res.end(body)
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
    res.flushHeaders()
    const keepAlive = setInterval(() => { res.write(': keep-alive\n\n') }, this.keepAliveMs)
    keepAlive.unref()
    const st: Stream = { res, principal, topic, keepAlive }
    this.#streams.add(st)
    const done = (): void => { clearInterval(keepAlive); this.#streams.delete(st) }
    res.on('close', done)
    req.on('close', done)
  }

  send (res: ServerResponse, event: string, data: unknown): void {
    // Slow readers: skip rather than buffer without bound (the next event carries a full state).
    if (res.writableLength > 1024 * 1024) return
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
  }

  broadcast (event: string, data: unknown): void {
    for (const st of this.#streams) this.send(st.res, event, data)
  }

  publish (topic: string, event: string, data: unknown): void {
    for (const st of this.#streams) if (st.topic === topic) this.send(st.res, event, data)
  }

  closeAll (): void {
    for (const st of this.#streams) { clearInterval(st.keepAlive); st.res.end() }
    this.#streams.clear()
  }
}
