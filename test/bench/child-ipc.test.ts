/**
 * The one request/reply channel of the benchmarks (bench/lib/child-ipc.ts)
 * with a real forked child: results (structured clone keeps Buffers), the
 * child's errors as rejections naming the child, a per-request timeout for
 * a child that never answers, the built-in `cpu` and `quit`, and pending
 * requests rejected when the child dies.
 */
import t from 'tap'
import { IpcChild } from '../../bench/lib/child-ipc.js'

const script = new URL('./fixtures/ipc-child.ts', import.meta.url)
// tap runs TypeScript through a loader in execArgv: the child needs it too.
const fork = (): IpcChild => IpcChild.fork('probe', script, [], { execArgv: process.execArgv })

t.test('request/reply, errors, timeout, cpu and quit', async t => {
  const c = fork()
  t.teardown(() => c.kill())
  const r = await c.request<{ got: number, buf: Buffer }>('echo', { value: 42 })
  t.equal(r.got, 42)
  t.ok((r.buf as unknown) instanceof Uint8Array && r.buf.length === 2, 'advanced serialization keeps binary data')
  await t.rejects(c.request('fail'), /^probe: TypeError: asked to fail$/)
  await t.rejects(c.request('nope'), /unknown command nope/)
  await t.rejects(c.request('hang', {}, 200), /probe: no reply to "hang" within 200 ms/)
  const cpu = await c.cpu()
  t.ok(Number.isFinite(cpu) && cpu > 0, `cpu µs ${cpu}`)
  await c.quit(5000)
  t.equal(await c.exited, 0, 'quit exits 0')
  await c.quit() // idempotent once gone
})

t.test('pending requests are rejected when the child dies', async t => {
  const c = fork()
  t.teardown(() => c.kill())
  await c.request('echo', { value: 1 })
  const pending = c.request('hang')
  c.kill()
  await t.rejects(pending, /probe exited/)
})
