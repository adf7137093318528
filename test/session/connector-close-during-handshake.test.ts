/**
 * Regression: "cluster-slice.test.ts timed out after both tests passed" (2026-12-07, 2 runs in
 * 10). An edge closed while the hub's welcome was on its way: close() set the connector to
 * 'stopped', then the handshake's continuation set it to 'connected' and started liveness on the
 * closed connection; its 'close' began a retry loop that close() could no longer stop — a process
 * that never exits, an edge that dials forever after its owner closed it.
 *
 * Made exact with the join hook, which runs between the welcome and the session's start: close()
 * is called there. Real hub, real ws socket on loopback.
 */
import t from 'tap'
import { Hub } from '../../src/hub/hub.js'
import { EdgeConnector } from '../../src/edge/connector.js'
import { resolveJoin } from '../../src/edge/join-state.js'
import { loadOrCreateEdgeIdentity, signChallenge } from '../../src/identity/node-key.js'
import { nullLogger } from '../../src/ops/logger.js'
import { Backoff } from '../../src/session/liveness.js'
import { systemClock } from '../../src/util/clock.js'
import { testdir } from '../testdir.js'

t.test('close() while the welcome is being handled stops the connector for good', async t => {
  const dir = testdir(t)
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: `${dir}/hub`, admin: false })
  t.teardown(() => hub.close(200))
  const identity = await loadOrCreateEdgeIdentity(`${dir}/edge`)
  const join = await resolveJoin(`${dir}/edge`, 'edge-1', hub.createToken('edge-1'))
  const events: string[] = []
  const connector: EdgeConnector = new EdgeConnector({
    hubUrls: hub.urls,
    nodeId: 'edge-1',
    ...(join.join !== undefined ? { join: join.join } : {}),
    joined: false,
    onJoined: async () => { events.push('joined'); await connector.close() },
    key: { publicKey: identity.publicKeyRaw, sign: (nonce, ctx) => signChallenge(identity, nonce, ctx) },
    pins: join.pins,
    clock: systemClock,
    logger: nullLogger,
    handshakeTimeoutMs: 5000,
    dialTimeoutMs: 5000,
    backoff: new Backoff(10, 20),
    connection: {}
  })
  t.teardown(() => connector.close())
  connector.on('connected', () => events.push('connected'))
  connector.on('disconnected', () => events.push('disconnected'))
  connector.on('error', err => events.push(`error ${err.message}`))
  connector.start()
  const deadline = Date.now() + 5000
  while (!events.includes('joined') && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
  t.same(events, ['joined'], 'the hub welcomed the join and the hook closed the connector')
  // With retries every 10–20 ms, a connector still running would have dialled again by now.
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(connector.state, 'stopped', 'still stopped (before the fix: connected, then retrying)')
  t.same(events, ['joined'], 'never reported connected or disconnected after close()')
})
