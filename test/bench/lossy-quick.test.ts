/**
 * Smoke test of `edgefabric bench lossy --quick`: the real CLI in a child
 * process builds the link emulator, creates two network namespaces joined by
 * it, runs every scenario over two link profiles for quic and ws, and writes
 * JSON, Markdown and SVG. It asserts that the emulator's self-check passed
 * and that every scenario produced numbers — never the numbers themselves:
 * timing on a shared machine is not a test.
 *
 * Needs root, `ip` (iproute2), gcc and /dev/net/tun; skipped with the
 * reason otherwise (CI runs as root). Takes ~1.5–3 min: the file's timeout
 * is raised accordingly.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { cli } from './cli-run.js'
import { missingPrerequisites } from '../../src/cli/bench.js'

t.setTimeout(300_000)

t.test('bench: unknown benchmark and bad options are refused with exit code 2', async t => {
  const a = await cli(['bench', 'nonsense'], 30_000)
  t.equal(a.code, 2)
  t.match(a.err, /unknown benchmark "nonsense" \(known: lossy\)/)
  if (missingPrerequisites().length > 0) return
  const b = await cli(['bench', 'lossy', '--transports', 'carrier-pigeon'], 120_000)
  t.equal(b.code, 2, b.err)
  t.match(b.err, /invalid option "--transports": unknown transport "carrier-pigeon"/)
})

const missing = missingPrerequisites()
t.test('bench lossy --quick: self-check passes, every scenario has numbers', { skip: missing.length > 0 ? `needs ${missing.join(', ')}` : false }, async t => {
  const dir = t.testdir()
  const started = Date.now()
  const r = await cli(['bench', 'lossy', '--quick', '--out', dir, '--seed', '7'], 280_000)
  t.comment(`quick run took ${Math.round((Date.now() - started) / 1000)} s`)
  t.equal(r.code, 0, `exit 0 (self-check passed)\n${r.err.slice(-2000)}\n${r.out.slice(-3000)}`)
  t.match(r.out, /plan: 2 links × 2 transports × 1 runs.*estimate ≈ \d+ min/, 'prints an estimate up front')
  t.match(r.out, /1\/4 rtt50-loss0 \w+ run 1/, 'prints progress lines')
  t.match(r.out, /tc netem: (available|unavailable — .+)/, 'says whether netem exists')
  t.match(r.out, /self-check: PASSED/)

  const report = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))
  t.equal(report.allChecksPassed, true)
  t.equal(report.options.seed, 7)
  t.ok(report.wireRate.pps64 > 0, `wire packet rate measured (${report.wireRate.pps64}/s)`)
  t.same(report.profiles.map((p: { profile: { key: string } }) => p.profile.key), ['rtt50-loss0', 'rtt50-loss5'])
  for (const p of report.profiles) {
    for (const c of p.checks) t.ok(c.ok, `${p.profile.key} ${c.name}: ${c.detail}`)
    t.same(Object.keys(p.cells).sort(), ['quic', 'ws'])
    for (const [transport, runs] of Object.entries(p.cells) as Array<[string, any[]]>) {
      const run = runs.find(x => x.valid)
      t.ok(run, `${p.profile.key} ${transport}: a valid run`)
      if (run === undefined) continue
      const where = `${p.profile.key} ${transport}`
      const byName = Object.fromEntries(run.client.map((c: { scenario: string }) => [c.scenario, c]))
      t.same(Object.keys(byName).sort(), ['bulk', 'hol', 'rr', 'setup', 'streams'], `${where}: every client scenario reported`)
      for (const c of run.client) t.equal(c.error, undefined, `${where} ${c.scenario}: no error`)
      t.ok(byName.bulk.goodputMbit > 0, `${where} bulk goodput`)
      for (const s of ['rr', 'hol', 'streams']) {
        t.ok(byName[s].p50Ms > 0 && byName[s].p99Ms >= byName[s].p50Ms && byName[s].perSecond > 0, `${where} ${s}: p50/p99/rate`)
      }
      t.ok(byName.hol.goodputMbit > 0, `${where} hol: bulk ran alongside`)
      t.ok(byName.setup.setupMs.length === 2 && byName.setup.setupMs.every((x: number) => x > 0), `${where} setup samples`)
      t.equal(run.reliable.error, undefined, `${where} reliable: no error`)
      t.ok(run.reliable.sent > 0 && run.reliable.delivered === run.reliable.sent, `${where} reliable: everything delivered`)
      t.ok(run.reliable.p99Ms > 0, `${where} reliable latency`)
      t.ok(run.wire.a2b.rx > 0 && run.wire.b2a.rx > 0, `${where}: traffic crossed the wire both ways`)
    }
  }
  // The 5 % profile really lost packets on the wire, the clean one did not.
  const lossy = report.profiles[1].cells.ws[0].wire.a2b
  t.ok(lossy.dropLoss > 0, 'packets dropped on the lossy link')
  t.equal(report.profiles[0].cells.ws[0].wire.a2b.dropLoss, 0, 'none on the clean link')

  t.equal(report.outages.length, 2, 'outage scenario for both transports')
  for (const o of report.outages) {
    t.equal(o.result.error, undefined, `outage ${o.transport}: no error`)
    t.ok(o.result.sent > 0 && o.result.delivered === o.result.sent, `outage ${o.transport}: every message delivered after the restore`)
    t.ok(Number.isFinite(o.result.drainMs) && o.result.drainMs >= 0, `outage ${o.transport}: drain time ${o.result.drainMs} ms`)
  }

  const md = readFileSync(join(dir, 'results.md'), 'utf8')
  t.match(md, /\| link \| transport \| bulk Mbit\/s/)
  t.match(md, /\| 3 s \| quic/)
  for (const svg of ['rr-p99-rtt50.svg', 'goodput-rtt50.svg', 'hol-p99-rtt50.svg', 'drain.svg']) {
    t.ok(existsSync(join(dir, svg)), `${svg} written`)
    const text = readFileSync(join(dir, svg), 'utf8')
    t.match(text, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
    t.match(text, /<circle /, `${svg} has data points`)
  }
})
