/**
 * The alternative backend of the lossy-link lab (`--backend netem`): a veth
 * pair between the two namespaces with a `tc netem` qdisc on each end's
 * egress, for machines whose kernel has netem (this project's reference
 * machine does not: probeNetem() says so and the wire is used).
 *
 * Mapping of LinkParams onto netem, and where it differs from the wire:
 * - delay/jitter: `delay D J` — netem's jitter may reorder packets; the wire's does not.
 * - loss: `loss random P%`; Gilbert-Elliott: `loss gemodel p r 1-h 1-k` (same model).
 * - rate/queue: `rate Nkbit` with `limit` in packets (queueBytes ÷ 1500).
 * - reorder: `reorder P%` — netem sends those packets without the delay
 *   (needs delay > 0); the wire holds them back instead.
 * - dup: `duplicate P%`. Link down: `loss 100%` (packets dropped, as on the wire).
 * - counters: netem's `drops` cannot tell loss from queue overflow, and
 *   there is no lateness figure (the kernel schedules, nothing to measure).
 * Offloads: gso_max_segs 1 on both ends, so one drop is one MTU-sized segment.
 */
import { execFileSync } from 'node:child_process'
import { LossySetupError } from './lossy-errors.js'
import type { DirStats, LinkParams } from './lossy-netns.js'

export const NETEM_DEV = 'efv0'

function tc (ns: string, args: string[]): string {
  try {
    return execFileSync('tc', ['-n', ns, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 })
  } catch (err) {
    const e = err as { stderr?: string, message: string }
    throw new LossySetupError(`tc -n ${ns} ${args.join(' ')}: ${(e.stderr ?? e.message).trim().split('\n')[0] ?? ''}`, { cause: err })
  }
}

const pct = (p: number): string => `${Number((p * 100).toPrecision(6))}%`

/** netem arguments for one direction's full parameter set. */
export function netemArgs (p: LinkParams, down: boolean): string[] {
  const a: string[] = ['delay', `${p.delayMs ?? 0}ms`]
  if ((p.jitterMs ?? 0) > 0) a.push(`${p.jitterMs}ms`)
  if (down) a.push('loss', '100%')
  else if (p.ge != null) a.push('loss', 'gemodel', pct(p.ge.p), pct(p.ge.r), pct(p.ge.lossBad), pct(p.ge.lossGood))
  else if ((p.loss ?? 0) > 0) a.push('loss', 'random', pct(p.loss ?? 0))
  if ((p.rateKbit ?? 0) > 0) a.push('rate', `${p.rateKbit}kbit`)
  // netem's limit counts packets (default 1000): the queue in MTU-sized packets, capped.
  a.push('limit', String(Math.min(100_000, Math.max(1, Math.floor((p.queueBytes ?? 2 ** 30) / 1500)))))
  if ((p.reorder ?? 0) > 0) a.push('reorder', pct(p.reorder ?? 0))
  if ((p.dup ?? 0) > 0) a.push('duplicate', pct(p.dup ?? 0))
  return a
}

export function applyNetem (ns: string, p: LinkParams, down: boolean): void {
  tc(ns, ['qdisc', 'replace', 'dev', NETEM_DEV, 'root', 'netem', ...netemArgs(p, down)])
}

/** Counters of the netem qdisc on `ns`'s veth end (the egress direction). */
export function readNetem (ns: string): { packets: number, bytes: number, drops: number } {
  const out = JSON.parse(tc(ns, ['-s', '-j', 'qdisc', 'show', 'dev', NETEM_DEV])) as Array<{ kind?: string, packets?: number, bytes?: number, drops?: number }>
  const q = out.find(x => x.kind === 'netem')
  if (q === undefined) throw new LossySetupError(`no netem qdisc on ${NETEM_DEV} in ${ns}`)
  return { packets: q.packets ?? 0, bytes: q.bytes ?? 0, drops: q.drops ?? 0 }
}

/** WireStats-shaped direction counters from two netem readings. */
export function netemDirStats (a: { packets: number, bytes: number, drops: number }, b: { packets: number, bytes: number, drops: number }): DirStats {
  const tx = b.packets - a.packets
  const drops = b.drops - a.drops
  return {
    rx: tx + drops, rxBytes: b.bytes - a.bytes, tx, txBytes: b.bytes - a.bytes,
    dropLoss: drops, dropQueue: 0, dropDown: 0, dropOverflow: 0, dropWrite: 0, dup: 0, reordered: 0
  }
}
