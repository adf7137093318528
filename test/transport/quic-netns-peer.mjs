// Peer process for test/transport/quic-migration.test.ts (runs inside a netns).
//   node quic-netns-peer.mjs listen <ip> <engine>
//     stdout: {type:'ready', url, identity}, then {type:'conn', remote} per inbound connection
//   node quic-netns-peer.mjs dial <url> <identity> <engine> <intervalMs>
//     one request every intervalMs (echo on 'normal'; failed = no answer within 1 s);
//     redials when the connection ends; on stdin end prints
//     {type:'result', requests, failed, failedAt[], dials, longestGapMs, gapAt}
import { createQuicTransport } from '../../dist/transport/quic.js'
import { generateQuicIdentity } from '../../dist/transport/quic-identity.js'
import { newMessage } from '../../dist/codec/envelope.js'

const [role, a, b, c, d] = process.argv.slice(2)
const out = o => process.stdout.write(JSON.stringify(o) + '\n')

if (role === 'listen') {
  const transport = createQuicTransport({ engine: b })
  const l = await transport.listen(new URL(`quic://${a}:0`), {
    identity: await generateQuicIdentity(),
    onConnection: conn => {
      out({ type: 'conn', remote: conn.remoteAddress })
      conn.on('message', (env, ch) => { try { conn.send(env, { channel: ch }) } catch { /* closing */ } })
    }
  })
  out({ type: 'ready', url: l.url, identity: l.identity })
  if (b === 'edgefabric') {
    // Report the peer address the engine currently uses for each connection (proves the rebinding happened).
    const { engine } = await import('../../dist/transport/quic-engine-native.js')
    const seen = new Map()
    setInterval(() => {
      for (const [cid, c] of engine().conns) {
        const addr = c.currentRemoteAddress()
        if (addr !== undefined && seen.get(cid) !== addr) { seen.set(cid, addr); out({ type: 'remote', cid, addr }) }
      }
    }, 50).unref()
  }
  process.stdin.resume()
  process.stdin.on('end', () => { void l.close(200).then(() => process.exit(0)) })
} else {
  const transport = createQuicTransport({ engine: c, maxIdleTimeoutMs: 10_000 })
  const interval = Number(d)
  const url = new URL(a)
  let conn
  let dials = 0
  let requests = 0
  let failed = 0
  const failedAt = []
  const pending = new Map()
  let lastOk = Date.now()
  let longestGapMs = 0
  let gapAt = 0
  let stopping = false
  const connect = async () => {
    while (!stopping) {
      try {
        dials++
        const cn = await transport.dial(url, { expectedRemoteIdentity: b, timeoutMs: 3000 })
        cn.on('message', env => {
          const p = pending.get(env.content.i)
          if (p === undefined) return
          pending.delete(env.content.i)
          clearTimeout(p.timer)
          const now = Date.now()
          if (now - lastOk > longestGapMs) { longestGapMs = now - lastOk; gapAt = now }
          lastOk = now
        })
        cn.on('close', () => { if (conn === cn) conn = undefined; if (!stopping) void connect() })
        conn = cn
        return
      } catch {
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
  }
  await connect()
  lastOk = Date.now()
  out({ type: 'ready' })
  const tick = setInterval(() => {
    const i = requests++
    const timer = setTimeout(() => { pending.delete(i); failed++; failedAt.push(Date.now()) }, 1000)
    pending.set(i, { timer })
    try {
      conn?.send(newMessage({ source: 'edge', group: 'g', operation: 'req', resource: 'r', content: { i } }))
    } catch { /* counted as failed by its timer */ }
  }, interval)
  process.stdin.resume()
  process.stdin.on('end', () => {
    stopping = true
    clearInterval(tick)
    setTimeout(() => {
      out({ type: 'result', requests, failed, failedAt, dials, longestGapMs, gapAt })
      for (const p of pending.values()) clearTimeout(p.timer)
      void (conn?.close() ?? Promise.resolve()).then(() => process.exit(0))
    }, 1100)
  })
}
