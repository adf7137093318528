/**
 * Regression: a hub orphaned by its parent's death was once still alive 15 s
 * later (fail-fast.test.ts, one full run). onShutdown resolved, but a handle
 * left open kept the process from ending by itself. Now a clean shutdown that
 * does not end the process within 3 s names what holds it and exits.
 */
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { start } from '../day2/procs.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/leaky-shutdown.mjs', import.meta.url))

t.test('a leaked handle after a clean close: the process names it and exits', async t => {
  const p = start(['leak'], { command: [process.execPath, FIXTURE] })
  t.teardown(() => { p.child.kill('SIGKILL') })
  await p.waitFor(/^ready$/, 20_000)
  const t0 = Date.now()
  p.child.kill('SIGTERM')
  await p.waitFor(/^closed 0$/, 20_000)
  const code = await p.exit(20_000)
  t.equal(code, 0, 'exit code of the clean shutdown, not a kill')
  t.match(p.stderr(), /still running 3000 ms after a clean shutdown, held by: .*Timeout/, 'names the handle')
  t.ok(Date.now() - t0 >= 2900, `exited after the backstop (${Date.now() - t0} ms), not at once`)
})

t.test('nothing leaked: the process ends by itself, without the backstop', async t => {
  const p = start([], { command: [process.execPath, FIXTURE] })
  t.teardown(() => { p.child.kill('SIGKILL') })
  await p.waitFor(/^ready$/, 20_000)
  p.child.kill('SIGTERM')
  t.equal(await p.exit(20_000), 0)
  t.notMatch(p.stderr(), /still running/)
})
