/**
 * Issue 12 "edges must never die of an expired token" and issue 13 item 11
 * "first use wins", with real processes: an edge joins with a 2 s token; the
 * token expires; hub and edge are killed and restarted several times and the
 * edge rejoins every time (with the expired token given again, and with no
 * token at all). A token replayed from another node key is refused
 * (EF_TOKEN_USED) and counted in the hub's metrics.
 */
import { join } from 'node:path'
import t from 'tap'
import { loadOrCreateHubIdentity } from '../../src/hub/identity.js'
import { createJoinToken, decodeJoinToken } from '../../src/identity/token.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { freePort, httpGet, run, sleep, start, type Proc } from './procs.js'

t.setTimeout(300_000)

t.test('an edge joined with a 2 s token survives its expiry across hub and edge restarts; replays are refused and counted', { timeout: 280_000 }, async t => {
  const root = t.testdir({})
  let dirs = 0
  const newDir = (): string => join(root, `d${dirs++}`)
  const hubDir = newDir()
  const port = await freePort()
  const url = `wss://127.0.0.1:${port}`
  const hubArgs = ['cloud', '--listen', url, '--data-dir', hubDir, '--admin', '127.0.0.1:0', '--heartbeat', '1s']
  let hub: Proc = start(hubArgs)
  const procs: Proc[] = [hub]
  t.teardown(async () => { for (const p of procs) { p.child.kill('SIGKILL'); await p.exit(5000) } })
  await hub.waitFor(/^ready$/)

  // The first join runs in this process (a child process start can take most
  // of 2 s on a loaded machine); every restart after it is a real process on
  // the same edge data dir.
  const identity = await loadOrCreateHubIdentity(hubDir)
  const edgeDir = newDir()
  const edgeArgs = (tok?: string): string[] => ['edge', '--hub', url, '--node', 'edge-1', ...(tok === undefined ? [] : ['--token', tok]),
    '--data-dir', edgeDir, '--admin', 'off', '--backoff-base', '50ms', '--backoff-cap', '300ms']
  // Warm-up join (another node): module loading under the test's TypeScript
  // loader must not eat the 2 s.
  const warm = await EdgeNode.start({ hub: url, nodeId: 'warm-up', token: createJoinToken(identity, { nodeId: 'warm-up' }), dataDir: newDir(), admin: false })
  await warm.waitConnected(20_000)
  await warm.close()
  const token = createJoinToken(identity, { nodeId: 'edge-1', ttlSeconds: 2 })
  const createdAt = Date.now()
  const first = await EdgeNode.start({ hub: url, nodeId: 'edge-1', token, dataDir: edgeDir, admin: false })
  try {
    await first.waitConnected(5000)
  } finally {
    await first.close()
  }
  await sleep(Math.max(0, createdAt + 3000 - Date.now()))
  t.ok(Date.now() / 1000 > decodeJoinToken(token).exp, 'the token has expired')
  let edge = start(edgeArgs(token))
  procs.push(edge)
  await edge.waitFor(/^connected /)
  t.pass('edge process rejoined with the expired token')

  let connects = edge.lines.filter(l => l.startsWith('connected ')).length
  for (let round = 0; round < 3; round++) {
    // hub crash + restart: the edge reconnects with its key alone
    hub.child.kill('SIGKILL')
    await hub.exit()
    hub = start(hubArgs)
    procs.push(hub)
    await hub.waitFor(/^ready$/)
    await edge.waitFor(new RegExp(`^connected `), 20_000)
    await sleepUntil(() => edge.lines.filter(l => l.startsWith('connected ')).length > connects, 20_000)
    connects = edge.lines.filter(l => l.startsWith('connected ')).length
    t.pass(`round ${round}: edge back after a hub restart, token expired ${Math.round((Date.now() - createdAt) / 1000 - 2)} s ago`)

    // edge restart: with the expired token given again (rounds 0, 1) and without any (round 2)
    edge.child.kill(round === 1 ? 'SIGKILL' : 'SIGTERM')
    await edge.exit()
    edge = start(edgeArgs(round === 2 ? undefined : token))
    procs.push(edge)
    await edge.waitFor(/^connected /)
    connects = edge.lines.filter(l => l.startsWith('connected ')).length
    t.pass(`round ${round}: restarted edge rejoined ${round === 2 ? 'without a token' : 'with the expired token'}`)
  }
  t.notMatch(edge.stderr(), /EF_TOKEN_EXPIRED/)

  // Replay from another key: a fresh 60 s token used by edge-2, then presented by an attacker's key.
  const t2 = (await run(['token', 'create', '--node', 'edge-2', '--ttl', '60s', '--data-dir', hubDir])).stdout.trim()
  const edge2 = start(['edge', '--hub', url, '--node', 'edge-2', '--token', t2, '--data-dir', newDir(), '--admin', 'off'])
  procs.push(edge2)
  await edge2.waitFor(/^connected /)
  const attacker = start(['edge', '--hub', url, '--node', 'edge-2', '--token', t2, '--data-dir', newDir(), '--admin', 'off'])
  procs.push(attacker)
  t.equal(await attacker.exit(), 3, 'attacker refused for good')
  t.match(attacker.stderr(), /EF_TOKEN_USED/)
  // The expired token replayed from another key: refused too.
  const late = start(['edge', '--hub', url, '--node', 'edge-1', '--token', token, '--data-dir', newDir(), '--admin', 'off'])
  procs.push(late)
  t.equal(await late.exit(), 3)
  t.match(late.stderr(), /EF_TOKEN_EXPIRED/)
  t.equal(edge2.child.exitCode, null, 'the real edge-2 is unaffected')

  const admin = (await hub.waitFor(/^admin (http:\S+)/))[1] as string
  const metrics = (await httpGet(`${admin}/metrics`)).body
  t.match(metrics, /edgefabric_hub_handshake_refusals_total\{code="EF_TOKEN_USED"\} 1\b/, 'the replay is counted')
  t.match(metrics, /edgefabric_hub_handshake_refusals_total\{code="EF_TOKEN_EXPIRED"\} 1\b/)
})

async function sleepUntil (check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await sleep(50)
  }
}
