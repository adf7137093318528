/**
 * `t.testdir()` that is removed only after the test's teardowns have run.
 *
 * Why: tap's fixture plugin and its teardown plugin each wrap the test's
 * onEOF when first used, and the later wrapper runs first. A test that calls
 * `t.testdir()` before its first `t.teardown()` therefore has its directory
 * removed *before* the teardowns that stop the processes writing into it — a
 * nats-server still writing consumer state made the removal fail with
 * ENOTEMPTY and the file time out (CI, test/cluster/bindings.test.ts, stop 21).
 * Registering a teardown first puts the removal outside it.
 */
import type { Test } from 'tap'

type Content = Parameters<Test['testdir']>[0]

export function testdir (t: Test, content?: Content): string {
  t.teardown(() => {})
  return t.testdir(content ?? {})
}
