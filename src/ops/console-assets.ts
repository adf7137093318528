/**
 * Static files of the operator's console (src/ops/console/, copied next to
 * the compiled module by scripts/copy-console.mjs): no build step at install,
 * no CDN. A fixed allow-list of files, read once and kept in memory (a few
 * tens of KB), served with a strict CSP: scripts and styles from this origin
 * only, fetches to this origin only.
 */
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'

const FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console-hub.js': 'text/javascript; charset=utf-8',
  'console-edge.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8'
}

export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const cache = new Map<string, Buffer>()

async function load (name: string): Promise<Buffer | undefined> {
  const hit = cache.get(name)
  if (hit !== undefined) return hit
  try {
    const b = await readFile(new URL(`./console/${name}`, import.meta.url))
    cache.set(name, b)
    return b
  } catch {
    return undefined
  }
}

/** Answer GET /console[/…]; false when the path is not a console file. */
export async function serveConsoleAsset (req: IncomingMessage, res: ServerResponse, path: string, role: 'hub' | 'edge'): Promise<boolean> {
  if (path === '/console') {
    res.writeHead(308, { location: '/console/', 'content-length': 0 })
    res.end()
    return true
  }
  let name = path.slice('/console/'.length)
  if (name === '') name = 'index.html'
  const type = FILES[name]
  if (type === undefined) return false
  let body = await load(name)
  if (body === undefined) {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
    res.end(`console asset ${name} is missing from the package\n`)
    return true
  }
  if (name === 'index.html') body = Buffer.from(body.toString('utf8').replace('data-role=""', `data-role="${role}"`))
  res.writeHead(200, {
    'content-type': type,
    'content-length': body.byteLength,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'content-security-policy': CONSOLE_CSP
  })
  res.end(req.method === 'HEAD' ? undefined : body)
  return true
}
