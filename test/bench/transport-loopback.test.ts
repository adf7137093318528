/**
 * Smoke test of bench/transport-loopback: runs it in `--quick --smoke` mode
 * (ws + in-process memory, ~100 ms per scenario, child-process server spawned
 * through tap's TypeScript loader) and checks that it produced a complete
 * table with numbers. It asserts the SHAPE of the output only, never the
 * numbers: this machine is shared and timing is not a test.
 */
import t from 'tap'
import { parseArgs, runBench } from '../../bench/transport-loopback.js'

t.test('transport-loopback --quick --smoke prints a table with numbers', async t => {
  const lines: string[] = []
  const opts = parseArgs(['--quick', '--smoke'])
  t.equal(opts.jsonPath, undefined, 'smoke mode writes no JSON')
  t.same(opts.transports, ['ws', 'memory'])
  const started = Date.now()
  const report = await runBench({ ...opts, log: line => lines.push(line) })
  t.comment(`smoke run took ${Date.now() - started} ms`)

  t.same(report.transports.map(r => r.key), ['ws', 'memory'])
  for (const tr of report.transports) {
    t.equal(tr.unavailable, undefined, `${tr.key} ran`)
    for (const s of report.scenarios) {
      const r = tr.scenarios[s.key]
      t.same(r?.errors, [], `${tr.key} ${s.key}: no errors`)
      t.ok((r?.samples.length ?? 0) > 0 && r?.samples.every(x => Number.isFinite(x) && x > 0), `${tr.key} ${s.key}: positive samples`)
    }
  }
  t.ok(report.transports.find(r => r.key === 'memory')?.inProcess, 'memory is marked in-process')

  const out = lines.join('\n')
  t.match(out, /load average at start: \d/, 'records the load average')
  const rows = lines.filter(l => l.startsWith('| '))
  const header = rows[0] ?? ''
  t.match(header, /\| transport +\|.*MB\/s.*req\/s/, 'summary header names the units')
  for (const name of ['ws', 'memory (in-process)']) {
    const row = rows.find(l => l.startsWith(`| ${name} `))
    t.ok(row, `summary row for ${name}`)
    const cells = (row ?? '').split('|').slice(2, -1).map(c => c.trim())
    t.equal(cells.length, report.scenarios.length, `${name}: one cell per scenario`)
    for (const c of cells) t.match(c, /^[\d,]+(\.\d)? \(\d+\.\d\d×\)$/, `${name}: "${c}" is a number with its ratio to ws`)
  }
  t.match(out, /\| ws +\| +1\.00×|\(1\.00×\)/, 'ws is the 1.00× reference')
  t.match(out, /p50 µs \| p99 µs/, 'detail table has latency percentiles')
})
