/**
 * Regression (CI stop 21, test/cluster/bindings.test.ts: ENOTEMPTY, then a
 * timeout): a test's fixture dir was removed before the teardown that stopped
 * the nats-server writing into it. test/testdir.ts's `testdir()` keeps the dir
 * until every teardown has run, whichever was registered first.
 */
import t from 'tap'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { testdir } from './testdir.js'

t.test('fixture dir outlives teardowns registered after it', async t => {
  const seen: boolean[] = []
  let dir = ''
  await t.test('inner', async tt => {
    dir = testdir(tt)
    tt.teardown(async () => {
      // a process still running at teardown time writes a file, then stops
      await new Promise(resolve => setTimeout(resolve, 20))
      seen.push(existsSync(dir))
      writeFileSync(join(dir, 'late-write'), 'x')
    })
    tt.pass('set up')
  })
  t.same(seen, [true], 'the dir still existed when the teardown ran')
  t.equal(existsSync(dir), false, 'and was removed afterwards, late file included')
})
