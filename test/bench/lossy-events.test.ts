/**
 * Smoke test of the lossy-link bench's peers and event scenarios through the
 * real CLI: `bench lossy` with no grid, ws and mosquitto on the wire, the NAT
 * rebinding scenario for 6 s. Asserts what the emulation must produce — a
 * TCP connection cannot survive its source address changing, so both
 * systems report their connection dropped; everything sent is delivered in
 * the end; the report has the event table, the peer's configuration and the
 * charts — never timing figures.
 *
 * Needs root, `ip`, gcc, /dev/net/tun, nft and mosquitto (Debian packages
 * iproute2, gcc, nftables, mosquitto); skipped with the reason otherwise.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { cli } from './cli-run.js'
import { hasCommand, missingPrerequisites } from '../../src/cli/bench.js'

t.setTimeout(300_000)

const missing = missingPrerequisites()
if (!hasCommand('nft', ['--version'])) missing.push('nft (Debian package nftables)')
if (!hasCommand('mosquitto', ['-h'])) missing.push('mosquitto (Debian package mosquitto)')

t.test('bench lossy: bad --peers / --events / --event-duration are refused', { skip: missingPrerequisites().length > 0 ? 'needs root, ip, gcc, /dev/net/tun' : false }, async t => {
  const a = await cli(['bench', 'lossy', '--peers', 'rabbitmq'], 120_000)
  t.equal(a.code, 2)
  t.match(a.err, /invalid option "--peers": unknown peer "rabbitmq"/)
  const b = await cli(['bench', 'lossy', '--events', 'earthquake'], 120_000)
  t.equal(b.code, 2)
  t.match(b.err, /unknown event scenario "earthquake"/)
  const c = await cli(['bench', 'lossy', '--event-duration', 'flap=10'], 120_000)
  t.equal(c.code, 2)
  t.match(c.err, /expected scenario=ms with ms ≥ 5000/)
})

t.test('bench lossy: NAT rebinding for ws and mosquitto on the same wire', { skip: missing.length > 0 ? `needs ${missing.join(', ')}` : false }, async t => {
  const dir = t.testdir()
  const r = await cli(['bench', 'lossy', '--quick', '--profiles', '', '--outages', 'none', '--transports', 'ws', '--peers', 'mosquitto',
    '--events', 'rebind', '--event-duration', 'rebind=6000', '--out', dir, '--seed', '3'], 280_000)
  if (r.code !== 0) t.comment(`${r.err.slice(-2000)}\n${r.out.slice(-3000)}`)
  t.equal(r.code, 0, 'exit 0 (self-check passed)')
  const report = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))
  t.same(report.events.map((e: { system: string }) => e.system).sort(), ['mosquitto', 'ws'])
  for (const e of report.events) {
    const where = `${e.scenario} ${e.system}`
    t.equal(e.result.error, undefined, `${where}: no error`)
    t.same(e.result.events.map((x: { what: string }) => x.what), ['rebind source port (30000-39999)', 'rebind source IP (10.77.0.5)'], `${where}: both rebindings applied`)
    t.ok(e.result.requests.sent > 0 && e.result.requests.ok > 0, `${where}: requests answered (${e.result.requests.ok}/${e.result.requests.sent})`)
    t.equal(e.result.requests.ok + e.result.requests.failed, e.result.requests.sent, `${where}: every request accounted for`)
    t.ok(e.result.disconnects >= 1, `${where}: the TCP connection dropped on rebinding (${e.result.disconnects} disconnects, ${e.result.reconnects} reconnects)`)
    t.equal(e.result.delivery.delivered, e.result.delivery.sent, `${where}: every reliable message delivered`)
  }
  t.ok(report.peerConfig?.mosquitto?.includes('persistence true'), 'peer configuration recorded')
  const md = readFileSync(join(dir, 'results.md'), 'utf8')
  t.match(md, /Address change mid-session/)
  t.match(md, /\| mosquitto QoS 1 \|/)
  for (const svg of ['events-gap.svg', 'events-failed.svg']) {
    t.ok(existsSync(join(dir, svg)), `${svg} written`)
    t.match(readFileSync(join(dir, svg), 'utf8'), /<circle /, `${svg} has points`)
  }
})
