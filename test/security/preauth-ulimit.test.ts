/**
 * Issue 13 item 1 — under the default 1024 file-descriptor limit, 1,100 idle
 * sockets blocked new wss joins and the admin endpoint.
 *
 * The hub runs in a child started under `ulimit -n 1024`. The attacker opens
 * 1,100 idle TCP sockets against its wss port from 127.0.0.2 and holds them.
 * The pre-auth deadline is set to 60 s here so that, without the caps, the
 * sockets would still be held (as they were for 79–120 s before) while we
 * try: the hub would sit at EMFILE and drop new connections. With the
 * per-source cap it holds at most 64 (the rest are reset at accept), so a
 * legitimate edge joins over wss within 15 s and the admin endpoint answers.
 * (Checked: with the caps raised to 100,000 the join does not happen.)
 */
import t from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { tcpIdle, type Attack } from './attackers.js'
import { until } from './helpers.js'
import { startHubChild } from './hub-child.js'

const SOCKETS = 1100

t.test('1,100 idle sockets under ulimit -n 1024 block neither a wss join nor the admin endpoint', async t => {
  const hub = await startHubChild(t, { listen: ['wss://127.0.0.1:0'], preAuth: { deadlineMs: 60_000 } }, { ulimit: 1024 })
  const url = hub.urls[0] as string
  const attacks: Attack[] = []
  t.teardown(() => { for (const a of attacks) a.stop() })
  for (let i = 0; i < SOCKETS; i++) attacks.push(tcpIdle(url, { localAddress: '127.0.0.2' }))
  await until(async () => await hub.counter('edgefabric_hub_connection_refusals_total', { reason: 'unauth_source_limit' }) >= SOCKETS - 64,
    20_000, 'the flood to hit the cap')
  t.ok((await hub.rss()).pending <= 64, 'the hub holds at most the per-source cap')

  const health = await fetch(`${hub.admin}/healthz`, { signal: AbortSignal.timeout(5000) })
  t.equal(health.status, 200, 'the admin endpoint answers during the flood')
  const edge = await EdgeNode.start({
    hub: url, nodeId: 'legit', token: await hub.token('legit'), dataDir: t.testdir({}) + '/edge', admin: false, backoff: { baseMs: 50, capMs: 500 }
  })
  try {
    await edge.waitConnected(15_000)
    t.pass('a legitimate edge joined over wss during the flood')
  } finally {
    await edge.close()
  }
})
