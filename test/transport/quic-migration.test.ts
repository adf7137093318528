/**
 * NAT rebinding (issue 18): a quic:// session must survive its edge's public
 * address changing mid-session, the way a cellular NAT rebinds.
 *
 * Real processes in network namespaces created here (names prefixed quic-):
 *   quic-e (edge, 10.201.1.2) ── quic-n (NAT router) ── quic-h (hub, 10.201.2.2)
 * The router SNATs the edge to 10.201.2.1 or .3 and a chosen port. A swap
 * changes the SNAT target and moves new packets to a fresh conntrack zone, so
 * the flow gets a new mapping at once (as when a NAT forgets a binding):
 * 3 port changes, then 3 address changes, 2 s apart, while the edge sends a
 * request every 20 ms. Bar: no reconnect, at most one failed request per
 * change, longest gap between answers ≤ 1 s.
 */
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { edgefabricAvailable } from '../../src/transport/quic-engine.js'

const PEER = fileURLToPath(new URL('./quic-netns-peer.mjs', import.meta.url))
const distReady = existsSync(fileURLToPath(new URL('../../dist/transport/quic.js', import.meta.url)))
const NS = { edge: 'quic-e', nat: 'quic-n', hub: 'quic-h' }

function sh (...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function nsExec (ns: string, ...args: string[]): string {
  return sh('ip', 'netns', 'exec', ns, ...args)
}

function teardownNetns (): void {
  for (const ns of Object.values(NS)) {
    try { sh('ip', 'netns', 'del', ns) } catch { /* not there */ }
  }
}

function natRules (zone: number, to: string): string {
  return `
table ip quic-nat {
  chain raw {
    type filter hook prerouting priority raw; policy accept;
    ct zone set ${zone}
  }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "quic-n1" ip saddr 10.201.1.0/24 meta l4proto udp snat to ${to}
  }
}
`
}

function setNat (zone: number, to: string): void {
  let flush = ''
  try { nsExec(NS.nat, 'nft', 'list', 'table', 'ip', 'quic-nat'); flush = 'delete table ip quic-nat\n' } catch { /* first time */ }
  execFileSync('ip', ['netns', 'exec', NS.nat, 'nft', '-f', '-'], { input: flush + natRules(zone, to) })
}

function setupNetns (): void {
  teardownNetns()
  for (const ns of Object.values(NS)) {
    sh('ip', 'netns', 'add', ns)
    nsExec(ns, 'ip', 'link', 'set', 'lo', 'up')
  }
  sh('ip', 'link', 'add', 'quic-e0', 'netns', NS.edge, 'type', 'veth', 'peer', 'name', 'quic-n0', 'netns', NS.nat)
  sh('ip', 'link', 'add', 'quic-n1', 'netns', NS.nat, 'type', 'veth', 'peer', 'name', 'quic-h0', 'netns', NS.hub)
  nsExec(NS.edge, 'ip', 'addr', 'add', '10.201.1.2/24', 'dev', 'quic-e0')
  nsExec(NS.edge, 'ip', 'link', 'set', 'quic-e0', 'up')
  nsExec(NS.edge, 'ip', 'route', 'add', 'default', 'via', '10.201.1.1')
  nsExec(NS.nat, 'ip', 'addr', 'add', '10.201.1.1/24', 'dev', 'quic-n0')
  nsExec(NS.nat, 'ip', 'addr', 'add', '10.201.2.1/24', 'dev', 'quic-n1')
  nsExec(NS.nat, 'ip', 'addr', 'add', '10.201.2.3/24', 'dev', 'quic-n1')
  nsExec(NS.nat, 'ip', 'link', 'set', 'quic-n0', 'up')
  nsExec(NS.nat, 'ip', 'link', 'set', 'quic-n1', 'up')
  nsExec(NS.nat, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
  nsExec(NS.hub, 'ip', 'addr', 'add', '10.201.2.2/24', 'dev', 'quic-h0')
  nsExec(NS.hub, 'ip', 'link', 'set', 'quic-h0', 'up')
  setNat(1, '10.201.2.1:40001')
}

function canNetns (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for ip netns'
  try {
    sh('ip', 'netns', 'add', 'quic-probe')
    sh('ip', 'netns', 'del', 'quic-probe')
    sh('nft', '--version')
  } catch (err) {
    return `ip netns / nft unavailable: ${(err as Error).message}`
  }
  return undefined
}

interface Proc { child: ChildProcessByStdio<Writable, Readable, null>, lines: AsyncIterator<string> }

function start (ns: string, args: string[]): Proc {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, PEER, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
  return { child, lines: createInterface({ input: child.stdout })[Symbol.asyncIterator]() }
}

async function next (p: Proc, type: string): Promise<Record<string, unknown>> {
  for (;;) {
    const r = await p.lines.next()
    if (r.done === true) throw new Error(`peer ended before ${type}`)
    const o = JSON.parse(r.value) as Record<string, unknown>
    if (o.type === type) return o
  }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

interface Result { requests: number, failed: number, failedAt: number[], dials: number, longestGapMs: number }

async function scenario (engine: string): Promise<{ result: Result, changes: number[], hubConns: number, remotes: string[] }> {
  setupNetns()
  const hub = start(NS.hub, ['listen', '10.201.2.2', engine])
  let edge: Proc | undefined
  try {
    const ready = await next(hub, 'ready')
    let hubConns = 0
    const remotes = new Set<string>()
    void (async () => {
      for (;;) {
        const r = await hub.lines.next()
        if (r.done === true) return
        const o = JSON.parse(r.value) as { type: string, addr?: string }
        if (o.type === 'conn') hubConns++
        if (o.type === 'remote') remotes.add(o.addr as string)
      }
    })().catch(() => {})
    edge = start(NS.edge, ['dial', String(ready.url), String(ready.identity), engine, '20'])
    await next(edge, 'ready')
    await sleep(2000)
    const targets = ['10.201.2.1:40002', '10.201.2.1:40003', '10.201.2.1:40004', '10.201.2.3:40005', '10.201.2.1:40006', '10.201.2.3:40007']
    const changes: number[] = []
    for (const [i, to] of targets.entries()) {
      setNat(i + 2, to)
      changes.push(Date.now())
      await sleep(2000)
    }
    edge.child.stdin.end()
    const result = await next(edge, 'result') as unknown as Result
    return { result, changes, hubConns, remotes: [...remotes] }
  } finally {
    edge?.child.kill('SIGKILL')
    hub.child.stdin.end()
    await new Promise(resolve => { hub.child.once('exit', resolve); setTimeout(resolve, 2000) })
    hub.child.kill('SIGKILL')
    teardownNetns()
  }
}

const skip = canNetns() ?? (distReady ? undefined : 'dist/ not built (npm run build)')
const avail = edgefabricAvailable()

t.test('NAT rebinding: the session survives 3 port and 3 address changes (edgefabric engine)', { skip: skip ?? (avail.ok ? false : avail.reason) }, async t => {
  const { result, changes, hubConns, remotes } = await scenario('edgefabric')
  t.comment(`requests ${result.requests}, failed ${result.failed}, dials ${result.dials}, hub connections ${hubConns}, longest gap ${result.longestGapMs} ms`)
  t.comment(`edge addresses seen by the hub: ${remotes.join(' ')}`)
  t.ok(remotes.length >= changes.length + 1, `the hub followed the edge to ${remotes.length} addresses`)
  t.equal(result.dials, 1, 'the edge never redialled')
  t.equal(hubConns, 1, 'the hub saw one connection')
  for (const [i, at] of changes.entries()) {
    const end = changes[i + 1] ?? Infinity
    const n = result.failedAt.filter(f => f - 1000 >= at - 50 && f - 1000 < end).length
    t.ok(n <= 1, `change ${i + 1}: ${n} failed request(s) (≤ 1)`)
  }
  t.ok(result.failed <= changes.length, `failed ${result.failed} ≤ ${changes.length} in total`)
  t.ok(result.longestGapMs <= 1000, `longest gap ${result.longestGapMs} ms ≤ 1000`)
})
