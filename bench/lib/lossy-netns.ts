/**
 * The lossy-link lab: two network namespaces joined only by the userland
 * wire (bench/lossy/wire.c), one TUN device in each. Side A (10.77.0.1) runs
 * clients/edges, side B (10.77.0.2) servers/hubs; every packet between them
 * crosses the wire and suffers the same impairment whatever the transport.
 *
 * Names are `bench-<pid>x<n>a|b`, unique per process and lab, so parallel runs
 * never collide; the same 10.77.0.0/30 addresses are fine because each lab
 * has its own namespaces. close() (also run on SIGINT/SIGTERM/exit by the
 * bench) kills the lab's processes, then deletes the namespaces; the wire's
 * TUN devices vanish with it.
 *
 * TCP congestion control is pinned inside both namespaces (cubic unless
 * asked otherwise): this machine defaults to BBR, which ignores loss, so
 * results would say more about the default than the transport. A namespace
 * may only pick an algorithm listed in the root namespace's
 * net.ipv4.tcp_allowed_congestion_control, so it is added there and the
 * original value restored on close.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { missingPrerequisites } from '../../src/cli/bench.js'
import { createInterface } from 'node:readline'
import { buildTool } from './lossy-build.js'
import { LossyPrerequisiteError, LossySetupError } from './lossy-errors.js'
import { applyNetem, NETEM_DEV, netemDirStats, readNetem } from './lossy-netem.js'

export const ADDR_A = '10.77.0.1'
export const ADDR_B = '10.77.0.2'
/** Side A's second public address after a NAT rebinding of the source IP (see LinkLab.nat). */
export const ADDR_A_REBOUND = '10.77.0.5'
const NAT_TABLE = 'bench_nat'
const DEV = 'efwire0'
const ALLOWED_CC = '/proc/sys/net/ipv4/tcp_allowed_congestion_control'

/** Impairment of one direction. Every field optional in a `set`; absent = unchanged. */
export interface LinkParams {
  /** One-way delay. @default 0 */
  delayMs?: number
  /** Uniform jitter ± this much (never reorders by itself). @default 0 */
  jitterMs?: number
  /** Bernoulli loss probability 0..1 (ignored while `ge` is set). @default 0 */
  loss?: number
  /** Gilbert-Elliott bursts: p = P(good→bad), r = P(bad→good) per packet, loss probability in each state. */
  ge?: { p: number, r: number, lossGood: number, lossBad: number } | null
  /** Serialisation rate in kbit/s; 0 = unlimited. @default 0 */
  rateKbit?: number
  /** Drop-tail queue limit of the rate limiter, bytes. @default 1 GiB (i.e. unbounded) */
  queueBytes?: number
  /** Probability a packet is held back `reorderGapMs` so later ones overtake it. @default 0 */
  reorder?: number
  /** @default 1 */
  reorderGapMs?: number
  /** Duplication probability. @default 0 */
  dup?: number
}

export interface DirStats {
  rx: number, rxBytes: number, tx: number, txBytes: number,
  dropLoss: number, dropQueue: number, dropDown: number, dropOverflow: number, dropWrite: number, dup: number, reordered: number
}
export interface WireStats {
  a2b: DirStats
  b2a: DirStats
  held: number
  down: boolean
  lateness: { n: number, meanUs: number, p50Us: number, p99Us: number, p999Us: number, maxUs: number }
}

function run (cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 })
  } catch (err) {
    const e = err as { stderr?: string, message: string }
    throw new LossySetupError(`${cmd} ${args.join(' ')}: ${(e.stderr ?? e.message).trim().split('\n')[0] ?? ''}`, { cause: err })
  }
}

/** Everything the lab needs, or a LossyPrerequisiteError naming what is missing (the CLI checks the same list). */
export function checkPrerequisites (): void {
  const missing = missingPrerequisites()
  if (missing.length > 0) throw new LossyPrerequisiteError(missing)
}

/**
 * Whether a real `tc netem` exists here, probed in a throwaway namespace on a
 * veth pair so the host is never touched. Returns the reason when not.
 */
export function probeNetem (): { available: true } | { available: false, reason: string } {
  const ns = `bench-${process.pid}probe`
  try {
    run('ip', ['netns', 'add', ns])
    run('ip', ['-n', ns, 'link', 'add', 'efd0', 'type', 'veth', 'peer', 'name', 'efd1'])
    run('ip', ['-n', ns, 'link', 'set', 'efd0', 'up'])
    run('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'efd0', 'root', 'netem', 'delay', '1ms'])
    return { available: true }
  } catch (err) {
    return { available: false, reason: (err as Error).message }
  } finally {
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }) } catch { /* never created */ }
  }
}

function paramArgs (p: LinkParams): string[] {
  const a: string[] = []
  const put = (k: string, v: number | undefined): void => { if (v !== undefined) a.push(`${k}=${v}`) }
  put('delay_ms', p.delayMs)
  put('jitter_ms', p.jitterMs)
  put('loss', p.loss)
  put('rate_kbit', p.rateKbit)
  put('queue_bytes', p.queueBytes)
  put('reorder', p.reorder)
  put('reorder_gap_ms', p.reorderGapMs)
  put('dup', p.dup)
  if (p.ge === null) a.push('ge=0')
  else if (p.ge !== undefined) a.push('ge=1', `ge_p=${p.ge.p}`, `ge_r=${p.ge.r}`, `ge_loss_good=${p.ge.lossGood}`, `ge_loss_bad=${p.ge.lossBad}`)
  return a
}

let labCounter = 0

export interface LabOptions {
  seed: number
  /** TCP congestion control inside the namespaces. @default 'cubic' */
  cc?: string
  /** `wire` (userland, bench/lossy/wire.c) or `netem` (kernel; see lossy-netem.ts). @default 'wire' */
  backend?: 'wire' | 'netem'
}

type NetemReading = { packets: number, bytes: number, drops: number }

export class LinkLab {
  readonly nsA: string
  readonly nsB: string
  readonly cc: string
  readonly backend: 'wire' | 'netem'
  #wire: ChildProcess | undefined
  /** netem backend: each direction's full parameters (a `set` is partial), link state, counter baselines. */
  readonly #netem = { params: [{}, {}] as [LinkParams, LinkParams], down: false, base: undefined as [NetemReading, NetemReading] | undefined }
  #replies: Array<(line: string) => void> = []
  readonly #children = new Set<ChildProcess>()
  #ccRestore: string | undefined
  #closed = false

  private constructor (cc: string, backend: 'wire' | 'netem') {
    this.backend = backend
    const base = `bench-${process.pid}x${labCounter++}`
    this.nsA = `${base}a`
    this.nsB = `${base}b`
    this.cc = cc
  }

  static async create (o: LabOptions): Promise<LinkLab> {
    checkPrerequisites()
    const backend = o.backend ?? 'wire'
    if (backend === 'netem') {
      const probe = probeNetem()
      if (!probe.available) throw new LossyPrerequisiteError([`tc netem (--backend netem): ${probe.reason}`])
    }
    const wireBin = backend === 'wire' ? buildTool('wire') : undefined
    const lab = new LinkLab(o.cc ?? 'cubic', backend)
    try {
      await lab.#setup(wireBin, o.seed)
      return lab
    } catch (err) {
      lab.close()
      throw err
    }
  }

  async #setup (wireBin: string | undefined, seed: number): Promise<void> {
    this.#allowCc()
    for (const ns of [this.nsA, this.nsB]) {
      run('ip', ['netns', 'add', ns])
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv4.tcp_congestion_control=${this.cc}`])
      const got = run('ip', ['netns', 'exec', ns, 'sysctl', '-n', 'net.ipv4.tcp_congestion_control']).trim()
      if (got !== this.cc) throw new LossySetupError(`congestion control in ${ns} is ${got}, wanted ${this.cc}`)
    }
    if (wireBin === undefined) {
      run('ip', ['link', 'add', NETEM_DEV, 'netns', this.nsA, 'type', 'veth', 'peer', 'name', NETEM_DEV, 'netns', this.nsB])
      for (const [ns, me, peer] of [[this.nsA, ADDR_A, ADDR_B], [this.nsB, ADDR_B, ADDR_A]] as const) {
        run('ip', ['-n', ns, 'addr', 'add', me, 'peer', peer, 'dev', NETEM_DEV])
        // One segment per skb: a netem drop must remove one MTU-sized packet, not a 64 KB GSO burst.
        run('ip', ['-n', ns, 'link', 'set', NETEM_DEV, 'mtu', '1500', 'gso_max_segs', '1', 'gso_max_size', '1500', 'up'])
        applyNetem(ns, {}, false)
      }
      return
    }
    const wire = spawn(wireBin, ['--ns-a', this.nsA, '--ns-b', this.nsB, '--dev', DEV, '--seed', String(seed)], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.#wire = wire
    wire.on('error', () => {})
    wire.stdin?.on('error', () => {})
    let stderr = ''
    wire.stderr?.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 4096) stderr += d })
    const lines = createInterface({ input: wire.stdout as NodeJS.ReadableStream })
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LossySetupError('wire did not start within 10 s')), 10_000)
      wire.once('exit', code => { clearTimeout(timer); reject(new LossySetupError(`wire exited (${String(code)}): ${stderr.trim()}`)) })
      lines.once('line', l => {
        clearTimeout(timer)
        if (l === 'ready') resolve()
        else reject(new LossySetupError(`wire said ${l}`))
      })
    })
    await ready
    lines.on('line', l => { this.#replies.shift()?.(l) })
    wire.once('exit', () => { for (const r of this.#replies.splice(0)) r('err wire exited') })
    for (const [ns, me, peer] of [[this.nsA, ADDR_A, ADDR_B], [this.nsB, ADDR_B, ADDR_A]] as const) {
      run('ip', ['-n', ns, 'addr', 'add', me, 'peer', peer, 'dev', DEV])
      run('ip', ['-n', ns, 'link', 'set', DEV, 'mtu', '1500', 'txqueuelen', '1000', 'up'])
    }
  }

  /** Add the algorithm to the root namespace's allowed list (restored on close). */
  #allowCc (): void {
    const before = readFileSync(ALLOWED_CC, 'utf8').trim()
    const list = before.split(/\s+/)
    if (list.includes(this.cc)) return
    const available = readFileSync('/proc/sys/net/ipv4/tcp_available_congestion_control', 'utf8').trim().split(/\s+/)
    if (!available.includes(this.cc)) {
      try { execFileSync('modprobe', [`tcp_${this.cc}`], { stdio: 'ignore' }) } catch { /* reported below */ }
    }
    try {
      writeFileSync(ALLOWED_CC, [...list, this.cc].join(' '))
    } catch (err) {
      throw new LossySetupError(`cannot allow congestion control ${this.cc} (available: ${available.join(' ')})`, { cause: err })
    }
    this.#ccRestore = before
  }

  /** One wire command, one reply line. */
  async command (line: string): Promise<string> {
    const wire = this.#wire
    if (wire === undefined || wire.exitCode !== null) throw new LossySetupError('wire is not running')
    const reply = new Promise<string>(resolve => this.#replies.push(resolve))
    wire.stdin?.write(line + '\n')
    const r = await reply
    if (r.startsWith('err')) throw new LossySetupError(`wire refused "${line}": ${r}`)
    return r
  }

  async set (dir: 'a2b' | 'b2a' | 'both', p: LinkParams): Promise<void> {
    if (this.backend === 'netem') {
      for (const i of dir === 'both' ? [0, 1] : dir === 'a2b' ? [0] : [1]) {
        const merged = { ...this.#netem.params[i as 0 | 1], ...p }
        this.#netem.params[i as 0 | 1] = merged
        applyNetem(i === 0 ? this.nsA : this.nsB, merged, this.#netem.down)
      }
      return
    }
    const args = paramArgs(p)
    if (args.length > 0) await this.command(`set ${dir} ${args.join(' ')}`)
  }

  /** Reset both directions to a clean link, then apply `p` to both. netem has no seed: its runs are not reproducible. */
  async configure (p: LinkParams, seed: number): Promise<void> {
    await this.set('both', { delayMs: 0, jitterMs: 0, loss: 0, ge: null, rateKbit: 0, queueBytes: 2 ** 30, reorder: 0, reorderGapMs: 1, dup: 0 })
    await this.set('both', p)
    if (this.backend === 'wire') await this.command(`seed ${seed}`)
    await this.up()
  }

  async down (): Promise<void> { await this.#linkState(true) }
  async up (): Promise<void> { await this.#linkState(false) }

  async #linkState (down: boolean): Promise<void> {
    if (this.backend === 'wire') {
      await this.command(down ? 'down' : 'up')
      return
    }
    this.#netem.down = down
    applyNetem(this.nsA, this.#netem.params[0], down)
    applyNetem(this.nsB, this.#netem.params[1], down)
  }

  async reset (): Promise<void> {
    if (this.backend === 'wire') await this.command('reset')
    else this.#netem.base = [readNetem(this.nsA), readNetem(this.nsB)]
  }

  async stats (): Promise<WireStats> {
    if (this.backend === 'wire') return JSON.parse(await this.command('stats')) as WireStats
    const zero = { packets: 0, bytes: 0, drops: 0 }
    const [a0, b0] = this.#netem.base ?? [zero, zero]
    return {
      a2b: netemDirStats(a0, readNetem(this.nsA)),
      b2a: netemDirStats(b0, readNetem(this.nsB)),
      held: 0,
      down: this.#netem.down,
      lateness: { n: 0, meanUs: 0, p50Us: 0, p99Us: 0, p999Us: 0, maxUs: 0 }
    }
  }

  /**
   * Source NAT on side A's way out, as a home router or carrier-grade NAT
   * does: generation `gen` maps every flow leaving A to `to` (a source port
   * range on A's own address, or another address). A new generation is a
   * NAT rebinding: each generation tracks flows in its own conntrack zone,
   * so flows already running get a fresh mapping on their next packet,
   * exactly like a NAT that lost its state (there is no conntrack tool here
   * to flush entries; zones make the old ones unreachable instead). Replies
   * find their way back: B routes ADDR_A_REBOUND over the wire, and A's
   * conntrack translates the destination back before routing.
   * `undefined` removes the NAT (and the route).
   */
  nat (gen: number, to: { addr?: string, ports?: [number, number] } | undefined): void {
    if (this.backend !== 'wire') throw new LossySetupError('NAT rebinding needs the wire backend')
    const dev = DEV
    try { execFileSync('ip', ['netns', 'exec', this.nsA, 'nft', 'delete', 'table', 'ip', NAT_TABLE], { stdio: 'ignore' }) } catch { /* none yet */ }
    if (to === undefined) {
      try { execFileSync('ip', ['-n', this.nsB, 'route', 'del', `${ADDR_A_REBOUND}/32`], { stdio: 'ignore' }) } catch { /* none */ }
      return
    }
    run('ip', ['-n', this.nsB, 'route', 'replace', `${ADDR_A_REBOUND}/32`, 'dev', dev])
    const target = `${to.addr ?? ADDR_A}${to.ports !== undefined ? `:${to.ports[0]}-${to.ports[1]}` : ''}`
    const zone = gen + 1
    const rules = [
      `table ip ${NAT_TABLE} {`,
      `  chain out_raw { type filter hook output priority raw; oifname "${dev}" ct zone set ${zone}; }`,
      `  chain in_raw { type filter hook prerouting priority raw; iifname "${dev}" ct zone set ${zone}; }`,
      `  chain post { type nat hook postrouting priority srcnat; oifname "${dev}" meta l4proto { tcp, udp } snat to ${target}; }`,
      '}'
    ].join('\n')
    const r = spawnSync('ip', ['netns', 'exec', this.nsA, 'nft', '-f', '-'], { input: rules, encoding: 'utf8', timeout: 10_000 })
    if (r.status !== 0) throw new LossySetupError(`nft in ${this.nsA}: ${(r.stderr ?? '').trim().split('\n')[0] ?? r.status}`)
  }

  /** Spawn `cmd args` inside side A or B. The child is killed on close(). */
  spawnIn (side: 'a' | 'b', cmd: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', side === 'a' ? this.nsA : this.nsB, cmd, ...args], options)
    this.#children.add(child)
    child.on('error', () => {})
    child.once('exit', () => this.#children.delete(child))
    return child
  }

  /** Synchronous so it can run from process 'exit' and signal handlers. Idempotent. */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    for (const c of this.#children) { try { c.kill('SIGKILL') } catch { /* gone */ } }
    // `ip netns exec` execs the command, so the pid above is the process itself;
    // anything it started on its own is found through the namespace.
    for (const ns of [this.nsA, this.nsB]) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(/\s+/).filter(Boolean)
        for (const p of pids) { try { process.kill(Number(p), 'SIGKILL') } catch { /* gone */ } }
      } catch { /* no such namespace */ }
    }
    try { this.#wire?.kill('SIGKILL') } catch { /* gone */ }
    for (const ns of [this.nsA, this.nsB]) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }) } catch { /* never created */ }
    }
    if (this.#ccRestore !== undefined) {
      try {
        // Only undo our own change: another run may have edited the list since.
        const now = readFileSync(ALLOWED_CC, 'utf8').trim().split(/\s+/)
        const before = this.#ccRestore.split(/\s+/)
        // A namespace keeps its setting once made, so a parallel run is not hurt by the removal.
        writeFileSync(ALLOWED_CC, now.filter(a => a !== this.cc || before.includes(a)).join(' '))
      } catch { /* best effort */ }
    }
  }
}
