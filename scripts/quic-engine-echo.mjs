#!/usr/bin/env node
/**
 * The engine's vertical slice as a behaviour check (scripts/build-quic-engine.sh --check):
 * a listener process on engine A, a dialer on engine B (paths to .node files), one
 * connection, echo of 1,000 envelopes on every channel, graceful close. Exits 0 on success.
 *   node scripts/quic-engine-echo.mjs A.node B.node
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { resolve } from 'node:path'

const [a0, b0, role, url, pin] = process.argv.slice(2)
const [a, b] = [resolve(a0), resolve(b0)]
const dist = new URL('../dist/', import.meta.url)

async function load () {
  const { createQuicTransport, generateQuicIdentity } = await import(new URL('transport/quic.js', dist).href)
  const { newMessage } = await import(new URL('codec/envelope.js', dist).href)
  return { transport: createQuicTransport({ engine: 'edgefabric' }), generateQuicIdentity, newMessage }
}

if (role === 'listen') {
  const { transport, generateQuicIdentity } = await load()
  const l = await transport.listen(new URL('quic://127.0.0.1:0'), {
    identity: await generateQuicIdentity(),
    onConnection: c => c.on('message', (env, ch) => c.send(env, { channel: ch }))
  })
  process.stdout.write(`${l.url} ${l.identity}\n`)
  process.stdin.resume()
  process.stdin.on('end', () => { void l.close().then(() => process.exit(0)) })
} else if (role === 'dial') {
  const { transport, newMessage } = await load()
  const c = await transport.dial(new URL(url), { expectedRemoteIdentity: pin, timeoutMs: 5000 })
  const N = 1000
  const channels = ['control', 'high', 'normal', 'bulk']
  let got = 0
  const done = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`echo: ${got}/${N} after 20 s`)), 20_000)
    c.on('message', env => { if (String(env.content?.i) !== undefined && ++got === N) { clearTimeout(t); resolve() } })
  })
  for (let i = 0; i < N; i++) {
    c.send(newMessage({ source: 'check', group: 'g', operation: 'echo', resource: `r/${i}`, content: { i, pad: 'x'.repeat(i % 3000) } }), { channel: channels[i % 4] })
  }
  await done
  await c.close()
  console.log(`quic-engine-echo: ${N} envelopes echoed`)
} else {
  const engineEnv = path => ({ ...process.env, EDGEFABRIC_QUIC_ENGINE_PATH: path })
  const self = fileURLToPath(import.meta.url)
  const listener = spawn(process.execPath, [self, a, b, 'listen'], { env: engineEnv(a), stdio: ['pipe', 'pipe', 'inherit'] })
  // Watched from the start: a listener that dies while the dialer runs must not leave a later
  // wait for its 'exit' hanging, and its exit code counts too.
  const listenerExit = new Promise(resolve => listener.on('exit', (c, sig) => resolve(c ?? sig)))
  const line = await new Promise((resolve, reject) => {
    let buf = ''
    listener.stdout.on('data', d => { buf += d; if (buf.includes('\n')) resolve(buf.trim()) })
    listener.on('exit', code => reject(new Error(`listener exited ${code}`)))
  })
  const [u, id] = line.split(' ')
  const dialer = spawn(process.execPath, [self, a, b, 'dial', u, id], { env: engineEnv(b), stdio: 'inherit' })
  const code = await new Promise(resolve => dialer.on('exit', (c, sig) => resolve(c ?? sig)))
  listener.stdin.end()
  const lcode = await listenerExit
  if (code !== 0) { console.error(`quic-engine-echo: FAIL (dialer exit ${code})`); process.exit(1) }
  if (lcode !== 0) { console.error(`quic-engine-echo: FAIL (listener exit ${lcode})`); process.exit(1) }
  console.log('quic-engine-echo: ok')
}
