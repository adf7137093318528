/**
 * Issue 13 item 3 — responses accepted from the wrong node.
 *
 * Attack as reported: the hub matched responses by request id only, so a
 * second (authenticated) edge that knew the id of a request sent to another
 * node answered first and the hub took its answer. Here the rogue edge is a
 * hand-made client (tests/security/helpers.ts), not EdgeNode, and answers
 * before the real node does. The hub must return the real node's answer,
 * drop the forged one, count it and report it.
 */
import t from 'tap'
import { newMessage, newResponse, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { HubEvent } from '../../src/hub/types.js'
import { counterValue, rawJoin, until } from './helpers.js'

for (const url of ['ws://127.0.0.1:0', 'quic://127.0.0.1:0']) {
  t.test(`a second edge cannot answer a request sent to another node (${url})`, async t => {
    const hub = await Hub.start({ listen: [url], dataDir: t.testdir({}) + '/hub', admin: false })
    t.teardown(() => hub.close(200))
    const events: HubEvent[] = []
    hub.on('event', e => events.push(e))
    const upstream: Envelope[] = []
    hub.on('message', m => upstream.push(m.envelope))

    const victim = await EdgeNode.start({
      hub: hub.urls[0] as string, nodeId: 'victim', token: hub.createToken('victim'), dataDir: t.testdir({}) + '/victim', admin: false
    })
    t.teardown(() => victim.close())
    let release!: () => void
    const released = new Promise<void>(resolve => { release = resolve })
    const module = victim.register({ name: 'meter', group: 'meter' })
    module.onMessage(async req => {
      await released // the real node answers only after the rogue has tried
      await module.respond(req, { reading: 'genuine' })
    })
    await victim.waitConnected(10_000)

    const rogue = await rawJoin(hub.urls[0] as string, 'mallory', hub.createToken('mallory'))
    t.teardown(() => rogue.conn.close())

    const req = newMessage({ source: 'cloud', group: 'meter', operation: 'query', resource: 'default/meter/m1', content: {} })
    const answer = hub.request('victim', req, { timeoutMs: 10_000 })
    // The rogue knows the id (request ids are not secrets) and answers first.
    rogue.conn.send(newResponse(req, { reading: 'forged' }, 'meter'))
    await until(() => events.some(e => e.type === 'response-refused'), 5000, 'the forged answer to be refused')
    release()
    const res = await answer
    t.same(res.content, { reading: 'genuine' }, 'the hub took the answer of the node it asked')
    t.ok(events.some(e => e.type === 'response-refused' && e.from === 'mallory' && e.requestId === req.header.id), 'reported with the sender')
    t.equal(await counterValue(hub.registry, 'edgefabric_hub_dropped_messages_total', { reason: 'response_from_wrong_node' }), 1, 'counted')
    t.notOk(upstream.some(e => e.header.parentId === req.header.id), 'the forged answer never reached the application stream')
  })
}
