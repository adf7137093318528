/**
 * Issue 13 item 5 — `--edge-to-edge` opened every edge's ServiceBus.
 *
 * Attack as reported: with edge-to-edge on, edge A read a loopback-only HTTP
 * app on edge B through B's ServiceBus. Here A is a hand-made client
 * (helpers.ts rawJoin), B a real EdgeNode whose ServiceBus may call a real
 * HTTP server on 127.0.0.1. Permission is an allow-list FROM->TO:MODULE, deny
 * by default:
 *  - no rules: A cannot reach B's ServiceBus;
 *  - a rule for another module (`a->b:alerts`): still not, also not through
 *    the bus's group fallback (destination `node:b/alerts`, group `servicebus`);
 *  - `a->b:servicebus`: A gets the app's answer, and the answer flows back
 *    without a rule for b->a;
 *  - `true` is refused when the hub starts.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { HubOptions } from '../../src/hub/types.js'
import { counterValue, rawJoin } from './helpers.js'

async function secretApp (t: Test): Promise<number> {
  const server = createServer((_req, res) => { res.end('the secret on b\'s loopback') })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  return (server.address() as AddressInfo).port
}

async function setup (t: Test, edgeToEdge: HubOptions['edgeToEdge']): Promise<{ hub: Hub, ask: (group: string, module: string) => Promise<Envelope> }> {
  const port = await secretApp(t)
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir({}) + '/hub', admin: false, edgeToEdge })
  t.teardown(() => hub.close(200))
  const b = await EdgeNode.start({
    hub: hub.urls[0] as string, nodeId: 'b', token: hub.createToken('b'), dataDir: t.testdir({}) + '/b', admin: false, serviceBus: { allowedPorts: [port] }
  })
  t.teardown(() => b.close())
  await b.waitConnected(10_000)
  const a = await rawJoin(hub.urls[0] as string, 'a', hub.createToken('a'))
  t.teardown(() => a.conn.close())
  const ask = async (group: string, module: string): Promise<Envelope> => {
    const req = newMessage({
      source: 'probe', destination: `node:b/${module}`, group, operation: 'http', resource: 'servicebus/http', sync: true,
      content: { method: 'GET', path: '/', port }
    })
    const answer = new Promise<Envelope>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('no answer')) }, 10_000)
      a.conn.on('message', env => { if (env.header.parentId === req.header.id) { clearTimeout(timer); resolve(env) } })
    })
    a.conn.send(req)
    return await answer
  }
  return { hub, ask }
}

const denied = async (hub: Hub): Promise<number> => await counterValue(hub.registry, 'edgefabric_hub_edge_forwards_total', { result: 'denied' })

t.test('deny by default: A cannot reach B\'s ServiceBus', async t => {
  const { hub, ask } = await setup(t, undefined)
  const r = await ask('servicebus', 'servicebus')
  t.equal(r.router.operation, 'error')
  t.match(r.content, { code: 'EF_FORBIDDEN' })
  t.equal(await denied(hub), 1, 'counted')
})

t.test('a rule for another module does not open the ServiceBus, not even through the group fallback', async t => {
  const { hub, ask } = await setup(t, ['a->b:alerts'])
  t.match((await ask('servicebus', 'servicebus')).content, { code: 'EF_FORBIDDEN' }, 'servicebus by name')
  t.match((await ask('servicebus', 'alerts')).content, { code: 'EF_FORBIDDEN' }, 'allowed module name, servicebus group')
  t.equal(await denied(hub), 2)
})

t.test('a->b:servicebus lets A call the app, and the answer flows back', async t => {
  const { hub, ask } = await setup(t, ['a->b:servicebus'])
  const r = await ask('servicebus', 'servicebus')
  t.equal(r.router.operation, 'response')
  t.equal((r.content as { status: number }).status, 200)
  t.equal(Buffer.from((r.content as { body: Uint8Array }).body).toString(), 'the secret on b\'s loopback')
  t.equal(await denied(hub), 0)
})

t.test('the option is validated once, naming the rule', async t => {
  const dataDir = t.testdir({})
  await t.rejects(Hub.start({ listen: ['memory://'], dataDir, admin: false, edgeToEdge: true as unknown as false }), { code: 'EF_INVALID_OPTION', message: /edgeToEdge.*a->b:alerts/ })
  await t.rejects(Hub.start({ listen: ['memory://'], dataDir, admin: false, edgeToEdge: ['a->b'] }), { message: /edgeToEdge\[0\].*FROM->TO:MODULE/ })
  await t.rejects(Hub.start({ listen: ['memory://'], dataDir, admin: false, edgeToEdge: ['a->b:ok', { from: 'a', to: 'b c', module: 'x' }] }), { message: /edgeToEdge\[1\]\.to/ })
})
