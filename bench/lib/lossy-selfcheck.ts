/**
 * Self-checks of the lossy-link emulator, so a result is only reported for a
 * link that really had the configured properties (issue 6):
 *
 * - RTT: UDP probes (bench/lossy/blast.c ping/echo) across the wire; the
 *   median must be within ±(2 ms + 5 %) of 2 × delay (+ serialisation of a
 *   probe at the rate limit); the bench probes up to 3 times.
 * - loss: the wire's own counters over a whole run (tens of thousands of
 *   packets): observed drop ratio per direction within 4 binomial standard
 *   deviations (+0.3 percentage points) of the configured mean; for
 *   Gilbert-Elliott the stationary mean p/(p+r)·lossBad + r/(p+r)·lossGood, and
 *   4 σ of a burst process (σ widened by the mean burst length).
 * - rate: a UDP flood of 1200-byte datagrams must arrive at 90–102 % of the
 *   configured rate (IP bytes).
 * - lateness: packets must leave the wire within 2 ms (p99, judged on runs of
 *   ≥ 1000 packets) of their scheduled time; late packets would add delay
 *   nobody configured. The wire runs SCHED_FIFO for this reason.
 * - packet rate: at zero impairment the wire must forward ≥ 100k packets/s
 *   (64-byte datagrams); measured once per invocation and reported.
 */
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { buildTool } from './lossy-build.js'
import { ADDR_B, type DirStats, type LinkLab, type LinkParams, type WireStats } from './lossy-netns.js'

export interface Check { name: string, ok: boolean, detail: string }

const PORT = 9000

function expectedLoss (p: LinkParams): { mean: number, burst: number } {
  if (p.ge != null) {
    const { p: gp, r, lossGood, lossBad } = p.ge
    const bad = gp / (gp + r)
    return { mean: bad * lossBad + (1 - bad) * lossGood, burst: 1 / r }
  }
  return { mean: p.loss ?? 0, burst: 1 }
}

async function firstLine (child: ChildProcess, timeoutMs: number): Promise<string> {
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no output within ${timeoutMs} ms`)), timeoutMs)
      rl.once('line', l => { clearTimeout(timer); resolve(l) })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`exited (${String(code)}) without output`)) })
    })
  } finally {
    rl.close()
  }
}

async function output (child: ChildProcess, timeoutMs: number): Promise<string> {
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no result within ${timeoutMs} ms`)) }, timeoutMs)
    child.once('exit', () => { clearTimeout(timer); resolve() })
  })
  return out.trim()
}

/** Median UDP round trip across the wire, and the probes' own loss. */
export async function probeRtt (lab: LinkLab, count: number, gapMs: number, waitMs: number): Promise<{ medianMs: number, sent: number, received: number }> {
  const blast = buildTool('blast')
  const echo = lab.spawnIn('b', blast, ['echo', String(PORT)], { stdio: ['ignore', 'pipe', 'ignore'] })
  try {
    await firstLine(echo, 5000)
    const ping = lab.spawnIn('a', blast, ['ping', ADDR_B, String(PORT), String(count), String(gapMs), String(waitMs)], { stdio: ['ignore', 'pipe', 'ignore'] })
    const r = JSON.parse(await output(ping, count * gapMs + waitMs + 10_000)) as { sent: number, received: number, rttMs: number[] }
    const sorted = [...r.rttMs].sort((a, b) => a - b)
    return { medianMs: sorted[Math.floor(sorted.length / 2)] ?? NaN, sent: r.sent, received: r.received }
  } finally {
    echo.kill('SIGKILL')
  }
}

/** Datagrams per second (and IP Mbit/s) arriving on side B while side A floods. */
export async function probeFlood (lab: LinkLab, seconds: number, size: number): Promise<{ pps: number, mbit: number, sentPps: number }> {
  const blast = buildTool('blast')
  // nice -15: the probe measures the wire, so its sender and receiver must not
  // be the bottleneck on a machine busy with other work.
  const recv = lab.spawnIn('b', 'nice', ['-n', '-15', blast, 'recv', String(PORT + 1), String(seconds)], { stdio: ['ignore', 'pipe', 'ignore'] })
  await firstLine(recv, 5000)
  const result = output(recv, seconds * 1000 + 20_000)
  const send = lab.spawnIn('a', 'nice', ['-n', '-15', blast, 'send', ADDR_B, String(PORT + 1), String(seconds + 0.5), String(size)], { stdio: ['ignore', 'pipe', 'ignore'] })
  const s = JSON.parse(await output(send, seconds * 1000 + 20_000)) as { packets: number, seconds: number }
  const r = JSON.parse((await result).split('\n').pop() ?? '{}') as { packets: number, seconds: number }
  const pps = r.seconds > 0 ? r.packets / r.seconds : 0
  return { pps, mbit: pps * (size + 28) * 8 / 1e6, sentPps: s.packets / s.seconds }
}

export function rttCheck (p: LinkParams, medianMs: number): Check {
  const serialisation = p.rateKbit !== undefined && p.rateKbit > 0 ? 2 * (32 * 8) / p.rateKbit : 0
  const expected = 2 * (p.delayMs ?? 0) + serialisation
  const tol = 2 + expected * 0.05
  return {
    name: 'rtt',
    ok: Math.abs(medianMs - expected) <= tol,
    detail: `median ${medianMs.toFixed(2)} ms, configured ${expected.toFixed(2)} ± ${tol.toFixed(2)} ms`
  }
}

export function rateCheck (p: LinkParams, mbit: number): Check {
  const want = (p.rateKbit ?? 0) / 1000
  return { name: 'rate', ok: mbit >= want * 0.9 && mbit <= want * 1.02, detail: `${mbit.toFixed(2)} Mbit/s, configured ${want.toFixed(2)} Mbit/s (90–102 %)` }
}

function lossCheckDir (name: string, p: LinkParams, d: DirStats): Check {
  const { mean, burst } = expectedLoss(p)
  // Dropped by the loss model out of what reached it (link-down and queue drops are not loss draws).
  const n = d.rx - d.dropDown
  if (n < 200) return { name, ok: true, detail: `only ${n} packets, not judged` }
  const observed = d.dropLoss / n
  const sigma = Math.sqrt(mean * (1 - mean) * burst / n)
  const tol = 4 * sigma + 0.003
  return { name, ok: Math.abs(observed - mean) <= tol, detail: `${(observed * 100).toFixed(2)} % of ${n} packets, configured ${(mean * 100).toFixed(2)} ± ${(tol * 100).toFixed(2)} %` }
}

/** Checks of one measured run from the wire's counters (reset before the run). */
export function runChecks (p: LinkParams, s: WireStats): Check[] {
  return [
    lossCheckDir('loss a→b', p, s.a2b),
    lossCheckDir('loss b→a', p, s.b2a),
    {
      name: 'lateness',
      // Judged on ≥ 1000 packets: below that, p99 is the 2nd–10th worst packet of the run.
      ok: s.lateness.n < 1000 || s.lateness.p99Us <= 2000,
      detail: `p50 ${s.lateness.p50Us} µs, p99 ${s.lateness.p99Us} µs, max ${(s.lateness.maxUs / 1000).toFixed(1)} ms over ${s.lateness.n} packets${s.lateness.n < 1000 ? ' (too few to judge)' : ''}`
    },
    { name: 'overflow', ok: s.a2b.dropOverflow + s.b2a.dropOverflow + s.a2b.dropWrite + s.b2a.dropWrite === 0, detail: `${s.a2b.dropOverflow + s.b2a.dropOverflow} overflow, ${s.a2b.dropWrite + s.b2a.dropWrite} write drops` }
  ]
}
