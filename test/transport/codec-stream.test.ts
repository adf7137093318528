/**
 * Connections use one codec stream per channel (src/codec/stream.ts): frames
 * shrink once shapes and strings are defined, each channel keeps its own
 * dictionaries, and a frame refused at send() (too large, buffer full) does
 * not leave the peer's decoder behind.
 */
import t from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { dial, listen } from '../../src/transport/index.js'
import type { Channel, Connection } from '../../src/transport/types.js'

const twin = (i: number, pad = ''): Envelope => newMessage({
  source: 'edge-1/devicetwin',
  group: 'twin',
  operation: 'update',
  resource: 'default/device/sensor-0042',
  content: { event_id: `e${i}`, twin: { temperature: { actual: { value: String(i % 10), metadata: { timestamp: 1 } } } }, pad }
})

async function pair (maxFrameSize = 16 * 1024 * 1024): Promise<{ client: Connection, server: Connection, close: () => Promise<void> }> {
  let server: Connection | undefined
  const listener = await listen('memory://', { onConnection: c => { server = c }, maxFrameSize })
  const client = await dial(listener.url, { maxFrameSize })
  for (let i = 0; i < 100 && server === undefined; i++) await new Promise(resolve => setImmediate(resolve))
  if (server === undefined) throw new Error('no inbound connection')
  return { client, server, close: async () => { client.abort(new Error('teardown')); await listener.close(100) } }
}

function receive (conn: Connection, n: number): Promise<Array<{ env: Envelope, channel: Channel }>> {
  return new Promise((resolve, reject) => {
    const got: Array<{ env: Envelope, channel: Channel }> = []
    const timer = setTimeout(() => reject(new Error(`received ${got.length} of ${n}`)), 5000)
    conn.on('message', (env: Envelope, channel: Channel) => {
      got.push({ env, channel })
      if (got.length === n) { clearTimeout(timer); resolve(got) }
    })
    void conn.closed().then(info => { clearTimeout(timer); reject(new Error(`closed: ${String(info.error)}`)) })
  })
}

t.test('frames shrink after the first sightings; channels keep their own dictionaries', async t => {
  const { client, server, close } = await pair()
  t.teardown(close)
  const channels: Channel[] = ['normal', 'bulk', 'control', 'high']
  const envs: Envelope[] = []
  const sizes = new Map<Channel, number[]>(channels.map(ch => [ch, []]))
  const got = receive(server, 20)
  for (let i = 0; i < 5; i++) {
    for (const ch of channels) {
      const env = twin(i)
      envs.push(env)
      const before = client.stats.bytesSent + client.stats.queuedBytes
      client.send(env, { channel: ch })
      ;(sizes.get(ch) as number[]).push(client.stats.bytesSent + client.stats.queuedBytes - before)
    }
  }
  const all = await got
  t.same(all.map(m => m.env), envs, 'every envelope arrives intact')
  for (const ch of channels) {
    const s = sizes.get(ch) as number[]
    t.ok((s[2] as number) < (s[0] as number) * 0.6, `${ch}: frame 3 is ${s[2]} bytes, frame 1 ${s[0]}`)
    t.equal(s[4], s[2], `${ch}: steady state`)
  }
})

t.test('a frame refused at send() does not desynchronize the peer', async t => {
  const { client, server, close } = await pair(4096)
  t.teardown(close)
  const got = receive(server, 4)
  client.send(twin(1)) // first sighting
  t.throws(() => client.send(twin(2, 'x'.repeat(5000))), { code: 'EF_FRAME_TOO_LARGE' }) // would define the shapes
  client.send(twin(3)) // defines them (again)
  client.send(twin(4)) // refers to them
  client.send(twin(5))
  const all = await got
  t.same(all.map(m => m.env.content), [twin(1), twin(3), twin(4), twin(5)].map(e => e.content))
  t.equal(server.status, 'open')
})
