/**
 * Console warnings (issue 15): disk nearly full (statfs injected), join tokens
 * near expiry (pure function, then on a real hub's /api/info).
 */
import t from 'tap'
import { Hub } from '../../src/hub/hub.js'
import { diskWarning, tokenExpiryWarning } from '../../src/ops/warnings.js'

const GiB = 1024 ** 3

t.test('disk nearly full: below 10 % or below 1 GiB free', async t => {
  const fs = (freeGiB: number, totalGiB: number) => async () => ({ bavail: freeGiB * GiB / 4096, bsize: 4096, blocks: totalGiB * GiB / 4096 })
  t.equal(await diskWarning('/data', { statfs: fs(50, 100) }), undefined)
  t.match(await diskWarning('/data', { statfs: fs(5, 100) }), /disk nearly full: 5\.0 GiB free of 100\.0 GiB .*\/data/)
  t.match(await diskWarning('/data', { statfs: fs(0.5, 2) }), /disk nearly full: 0\.5 GiB/, 'under 1 GiB even at 25 %')
  t.equal(await diskWarning('/data', { statfs: fs(0.5, 2), minFreeBytes: 0.25 * GiB }), undefined, 'thresholds are options')
  t.equal(await diskWarning('/data', { statfs: async () => { throw new Error('ENOENT') } }), undefined, 'no statfs: no warning, no throw')
  const real = await diskWarning(t.testdir({}))
  t.ok(real === undefined || /disk nearly full/.test(real), 'the real statfs of this machine answers')
})

t.test('join tokens near expiry', async t => {
  const now = Date.UTC(2026, 0, 1)
  const s = (ms: number): number => Math.floor((now + ms) / 1000)
  const H = 3_600_000
  t.equal(tokenExpiryWarning([], now), undefined)
  t.equal(tokenExpiryWarning([{ node: 'a', reusable: false, exp: s(2 * H), useCount: 0 }], now), undefined, 'unused, 2 h left: fine')
  t.match(tokenExpiryWarning([{ node: 'a', reusable: false, exp: s(30 * 60_000), useCount: 0 }], now), /unused token for a at 2026-01-01T00:30/)
  t.equal(tokenExpiryWarning([{ node: 'a', reusable: false, exp: s(30 * 60_000), useCount: 1 }], now), undefined, 'used: nothing waits on it')
  t.equal(tokenExpiryWarning([{ node: 'a', reusable: false, exp: s(30 * 60_000), useCount: 0, revokedAt: now - 1 }], now), undefined, 'revoked')
  t.equal(tokenExpiryWarning([{ node: 'a', reusable: false, exp: s(-H), useCount: 0 }], now), undefined, 'already expired: left out')
  t.match(tokenExpiryWarning([{ node: '*', reusable: true, exp: s(3 * 24 * H), useCount: 40 }], now), /reusable token for any node/, 'reusable within 7 days')
  const many = Array.from({ length: 8 }, (_, i) => ({ node: `n${i}`, reusable: false, exp: s((i + 1) * 60_000), useCount: 0 }))
  const w = tokenExpiryWarning(many.reverse(), now) as string
  t.match(w, /n0 .*n4.* and 3 more/, 'soonest first, five named')
  t.notMatch(w, /n5/)
})

t.test('the hub\'s /api/info lists a reusable join token near expiry', async t => {
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir({}) + '/hub' })
  t.teardown(() => hub.close(100))
  const info = async (): Promise<string[]> => ((await (await fetch(`${hub.adminUrl as string}/api/info`)).json()) as { warnings: string[] }).warnings
  t.notOk((await info()).some(w => /join tokens/.test(w)))
  await hub.issueToken({ reusable: true, ttlSeconds: 3 * 86_400 })
  t.match((await info()).find(w => /join tokens/.test(w)), /reusable token for any node/)
})
