/**
 * Regression: "an outbox reader on a just-restarted NATS server skipped messages; the edge's
 * ack purged them" (chaos run of 2026-12-07, 40 s spread: 4 edges lost 6–29 unversioned
 * messages each). The reader is an R1 consumer that NATS placed on a server that had just
 * restarted; it delivered the node's versioned messages and skipped its unversioned ones.
 *
 * A replica in that state cannot be made on demand, so the reader's consumer is wrapped here
 * to drop the first copy of one message, exactly what that replica did. The edge receives
 * the messages around it and acknowledges past it; the hub must not purge it unseen: it is
 * checked against the stream leader before the purge and sent again.
 */
import t from 'tap'
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream'
import { newMessage } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { needNats, startClusterHub, startNats, subdir, until } from './helpers.js'

t.setTimeout(90_000)

t.test('a message the outbox reader skipped is not purged by a later ack: it is delivered', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 1)
  const a = await startClusterHub(t, nats, 'hub-a', ['wss://127.0.0.1:0'])
  const b = await startClusterHub(t, nats, 'hub-b', ['ws://127.0.0.1:0'])

  // Hub A's readers lose the first copy of the message with this id (as the replica did).
  const target = 'skip-me'
  let skippedSeq: number | undefined
  const consumers = a.cluster?.connection.js.consumers as { get: (...args: unknown[]) => Promise<Consumer> }
  const get = consumers.get.bind(consumers)
  consumers.get = async (...args: unknown[]) => {
    const c = await get(...args)
    const consume = c.consume.bind(c)
    c.consume = async (o?: Parameters<Consumer['consume']>[0]) => {
      const msgs = await consume(o)
      return new Proxy(msgs, {
        get (target_, prop) {
          if (prop === Symbol.asyncIterator) {
            return async function * (): AsyncGenerator<JsMsg> {
              for await (const m of target_ as AsyncIterable<JsMsg>) {
                if (m.headers?.get('Ef-Id') === target && (skippedSeq === undefined || skippedSeq === m.seq)) { skippedSeq = m.seq; continue }
                yield m
              }
            }
          }
          const v: unknown = Reflect.get(target_, prop, target_)
          return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target_) : v
        }
      }) as ConsumerMessages
    }
    return c
  }

  const got: string[] = []
  const edge = await EdgeNode.start({
    hub: a.urls, nodeId: 'edge-1', token: a.createToken('edge-1'), dataDir: subdir(t, 'edge-1'), admin: false,
    onReliable: env => { got.push(env.header.id) }
  })
  t.teardown(() => edge.close())
  await edge.waitConnected(15_000)

  // Queued through hub B (hub A's lane then reads them from the stream, as in a cluster).
  const msg = (id: string): ReturnType<typeof newMessage> => newMessage({ id, source: 'test', group: 'app', operation: 'publish', resource: 'default/log/l', content: { id } })
  for (const id of ['before', target, 'after']) await b.send('edge-1', msg(id), { delivery: 'reliable' })

  await until('the messages around it arrived', () => got.includes('before') && got.includes('after'), 10_000)
  t.ok(skippedSeq !== undefined, `the reader skipped seq ${skippedSeq}`)
  await until('the skipped message arrived', () => got.includes(target), 10_000).catch(() => {})
  t.ok(got.includes(target), 'the skipped message reached the edge (published again before the purge)')
  await until('outbox empty', async () => (await a.cluster?.outboxDepth('edge-1')) === 0, 10_000).catch(() => {})
  t.equal(await a.cluster?.outboxDepth('edge-1'), 0, 'outbox empty')
})
