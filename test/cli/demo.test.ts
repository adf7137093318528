/**
 * `edgefabric demo` as the README's first command runs it: the built CLI in a
 * child process (real hub, two edges, edge-1's embedded MQTT broker, an MQTT.js
 * device). Checks the message-flow output and the device twin round trip —
 * desired set in the cloud → delta at the device on edge-1 → reported value in
 * the cloud registry — and that it ends by itself or on Ctrl-C, leaving no
 * temporary directory behind. Needs `npm run build` (dist/cli/main.js).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { testdir } from '../testdir.js'

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
const NUM = '(\\d+(?:\\.\\d+)?)'

interface Demo { lines: string[], stderr: () => string, waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray>, exit: Promise<number | null>, kill: (s: NodeJS.Signals) => void }

function demo (t: import('tap').Test, args: string[]): Demo {
  const tmp = testdir(t, {})
  // TMPDIR: the demo's data dir is created (and must be removed) there
  const child = spawn(process.execPath, [BIN, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } })
  child.on('error', () => {})
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const lines: string[] = []
  let err = ''
  const waiters: Array<{ re: RegExp, resolve: (m: RegExpMatchArray) => void }> = []
  createInterface({ input: child.stdout }).on('line', line => {
    lines.push(line)
    for (const w of [...waiters]) {
      const m = w.re.exec(line)
      if (m !== null) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m) }
    }
  })
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const exit = once(child, 'exit').then(async ([code]) => {
    await new Promise(resolve => setImmediate(resolve)) // last stdout lines
    t.same(readdirSync(tmp), [], 'the demo removed its data directory')
    return code as number | null
  })
  return {
    lines,
    stderr: () => err,
    exit,
    kill: s => { child.kill(s) },
    waitFor (re, ms = 30_000) {
      for (const line of lines) { const m = re.exec(line); if (m !== null) return Promise.resolve(m) }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} (stdout: ${lines.join(' | ')}; stderr: ${err.slice(-500)})`)), ms)
        waiters.push({ re, resolve: m => { clearTimeout(timer); resolve(m) } })
      })
    }
  }
}

/** The first twin round trip: three lines, in order, all about the same value. */
function checkRoundTrip (t: import('tap').Test, lines: string[]): string {
  const i = lines.findIndex(l => /^twin: desired target-temp=/.test(l))
  t.ok(i > 0, 'desired line printed')
  const desired = new RegExp(`^twin: desired target-temp=${NUM} set in the cloud registry \\(revision \\d+\\)$`).exec(lines[i] ?? '')
  t.ok(desired, `desired line: ${lines[i]}`)
  const value = (desired?.[1] ?? 'none').replace('.', '\\.')
  t.match(lines[i + 1], new RegExp(`^twin: delta target-temp=${value} received by default/thermostat-1 on edge-1 ${NUM} ms later$`), 'then the delta at the device')
  t.match(lines[i + 2], new RegExp(`^twin: reported target-temp=${value} visible in the cloud registry ${NUM} ms after the delta \\(round trip ${NUM} ms\\)$`), 'then the reported value in the cloud')
  t.ok(lines.some(l => /^twin: device default\/thermostat-1 logged in to edge-1's MQTT broker mqtt:\/\/127\.0\.0\.1:\d+ /.test(l)), 'the device logged in to edge-1\'s embedded broker')
  return desired?.[1] ?? ''
}

function checkSummary (t: import('tap').Test, lines: string[]): void {
  const sum = lines.map(l => /^twin: (\d+) round trips?, desired→delta p50 [\d.]+ ms, delta→reported p50 [\d.]+ ms, round trip p50 [\d.]+ max [\d.]+ ms; (\d+) device reports$/.exec(l)).find(m => m !== null)
  t.ok(sum, 'twin summary printed')
  t.ok(Number(sum?.[1]) >= 1, 'at least one round trip')
  t.ok(Number(sum?.[2]) >= 2, 'the device reported (state, applied set points, temperature)')
  // what the cloud registry holds at the end: the last desired value came back as reported, and the periodic temperature
  const reg = lines.map(l => /^twin: cloud registry: default\/thermostat-1 state online, desired target-temp=(\S+), reported (.*)$/.exec(l)).find(m => m !== null)
  t.ok(reg, 'cloud registry line printed')
  t.match(reg?.[2], new RegExp(`(^|, )target-temp=${(reg?.[1] ?? 'x').replace('.', '\\.')}(,|$)`), 'reported equals desired in the cloud registry')
  t.match(reg?.[2], /temperature=\d+(\.\d+)?/, 'periodic temperature reports reached the cloud')
  t.notOk(lines.some(l => /FAILED/.test(l)), 'no twin failures')
}

t.test('demo runs for --duration and exits 0 with messages and a twin round trip', async t => {
  const d = demo(t, ['--duration', '3s'])
  const code = await d.exit
  t.equal(code, 0, `exit 0 (stderr: ${d.stderr().slice(-500)})`)
  t.equal(d.stderr(), '', 'nothing on stderr')
  t.ok(d.lines.some(l => /^uploads\s+[1-9]\d* \(latency p50 [\d.]+ ms\)\s+read edge-1\/\w+\s+[1-9]/.test(l)), 'messages flowed')
  t.ok(d.lines.some(l => /^edge-1 joined over /.test(l)) && d.lines.some(l => /^edge-2 joined over /.test(l)), 'both edges joined')
  checkRoundTrip(t, d.lines)
  checkSummary(t, d.lines)
  t.equal(d.lines.at(-1), 'demo finished: messages flowed both ways on both transports; device twin round trips completed')
})

t.test('demo --forever stops on Ctrl-C with the twin summary and a clean teardown', async t => {
  const d = demo(t, ['--forever'])
  await d.waitFor(/^twin: reported target-temp=/)
  await d.waitFor(/^uploads /)
  d.kill('SIGINT')
  t.equal(await d.exit, 0, `exit 0 after SIGINT (stderr: ${d.stderr().slice(-500)})`)
  t.equal(d.stderr(), '', 'nothing on stderr')
  checkRoundTrip(t, d.lines)
  checkSummary(t, d.lines)
})
