/**
 * `edgefabric bench lossy …`: runs the lossy-link transport benchmark
 * (bench/lossy.ts, compiled to dist-bench/ by tsconfig.bench.json) in a child
 * process. In a development checkout a missing dist-bench is built with the
 * local tsc first; an installed package without the bench sources gets a
 * typed error saying so. Prerequisites (root, `ip`, gcc, /dev/net/tun) are
 * checked here so the error names everything missing at once.
 *
 * The child inherits the terminal: progress lines stream as they come, and
 * Ctrl-C reaches it directly (it removes its namespaces on SIGINT).
 */
import { execFileSync, spawn } from 'node:child_process'
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { EdgeFabricError, type ErrorOptions } from '../errors.js'
import type { Command } from './run.js'

/** The benchmark cannot run here; `missing` names each missing piece. */
export class BenchUnavailableError extends EdgeFabricError {
  static readonly code = 'EF_BENCH_UNAVAILABLE'
  readonly missing: string[]
  constructor (missing: string[], options?: ErrorOptions) {
    super(BenchUnavailableError.code, `cannot run the benchmark: ${missing.join('; ')}`, options)
    this.missing = missing
  }
}

const SUBCOMMANDS: Record<string, string> = {
  lossy: 'dist-bench/bench/lossy.js'
}

const usage = `Usage: edgefabric bench lossy [options]

Benchmarks the transports over an emulated lossy link (delay, loss, bursts,
rate limits, outages) between two network namespaces. Needs root, the \`ip\`
command (iproute2), gcc and /dev/net/tun.

Options:
  --quick                smoke profile (~2 min): 2 links, quic + ws, 1 run, short scenarios
  --out DIR              where results.json, results.md and the SVG charts go
  --seed N               PRNG seed of the link emulator (default 1)
  --transports LIST      comma list of quic, ws, webtransport
  --cc NAME              TCP congestion control inside the namespaces (default cubic)
  --backend wire|netem   link emulator: the userland wire (default) or tc netem where the kernel has it
  --runs N               runs per cell (default 3)
  --duration MS          per timed scenario (default 8000)
  --profiles LIST        link profiles, e.g. rtt50-loss5,rtt50-ge,rtt50-rate10 (default: all)
  --outages LIST         outage lengths in seconds, or "none" (default 15,60)
  --outage-profile KEY   link for the outage scenario (default rtt50-loss0)
  --outage-runs N        runs per outage length (default 2)`

/** The package root: the nearest directory above this module with a package.json. */
export function packageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir
    dir = dirname(dir)
  }
  throw new BenchUnavailableError(['the package root (no package.json above the CLI)'])
}

/** Whether `cmd args` can be run here (it exists; its exit code does not matter). */
export function hasCommand (cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 })
    return true
  } catch (err) {
    return (err as { code?: string }).code !== 'ENOENT'
  }
}

/** What the lossy benchmark needs from the machine; empty when everything is there. */
export function missingPrerequisites (): string[] {
  const missing: string[] = []
  if (process.platform !== 'linux') missing.push('Linux (network namespaces and TUN)')
  if (process.getuid?.() !== 0) missing.push('root (network namespaces and TUN devices; run with sudo)')
  if (!hasCommand('ip', ['-V'])) missing.push('the `ip` command (Debian package iproute2)')
  if (!hasCommand('gcc', ['--version'])) missing.push('gcc (Debian package gcc), to build the link emulator')
  try { accessSync('/dev/net/tun', constants.R_OK | constants.W_OK) } catch { missing.push('/dev/net/tun (TUN support; in a container: --device /dev/net/tun)') }
  return missing
}

/** Newest modification time of the .ts files under `dir` (0 when there are none). */
function newestTs (dir: string): number {
  let newest = 0
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs)
    }
  }
  try { walk(dir) } catch { /* unreadable: treat as old */ }
  return newest
}

/**
 * Path of the compiled bench script. In a development checkout (bench/ and
 * the local tsc present) dist-bench is (re)built when missing or older than
 * any source, so nobody benchmarks stale code; elsewhere a missing script is
 * a typed error.
 */
export function benchScript (root: string, rel: string): string {
  const script = join(root, rel)
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const config = join(root, 'tsconfig.bench.json')
  const dev = existsSync(config) && existsSync(join(root, 'bench')) && existsSync(tsc)
  if (!dev) {
    if (existsSync(script)) return script
    throw new BenchUnavailableError([`${rel} (benchmarks ship only with a source checkout: clone the repository, npm ci, then run this again)`])
  }
  const built = existsSync(script) ? statSync(script).mtimeMs : 0
  if (built > 0 && built >= Math.max(newestTs(join(root, 'src')), newestTs(join(root, 'bench')))) return script
  process.stderr.write(`bench: ${built === 0 ? 'building' : 'rebuilding (sources changed)'} dist-bench with tsc -p tsconfig.bench.json …\n`)
  try {
    execFileSync(process.execPath, [tsc, '-p', config], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
  } catch (err) {
    // tsc exits non-zero on type errors yet still emits; only a missing script is fatal.
    if (!existsSync(script)) throw new BenchUnavailableError([`${rel} (tsc -p tsconfig.bench.json failed)`], { cause: err })
  }
  if (!existsSync(script)) throw new BenchUnavailableError([`${rel} (not produced by tsc)`])
  return script
}

export const benchCommand: Command = {
  summary: 'edgefabric bench lossy — transport benchmarks over an emulated lossy link',
  usage,
  async run (argv: string[]): Promise<number> {
    const [sub, ...rest] = argv
    const rel = sub === undefined ? undefined : SUBCOMMANDS[sub]
    if (rel === undefined) {
      process.stderr.write(`edgefabric bench: ${sub === undefined ? 'missing' : `unknown`} benchmark${sub === undefined ? '' : ` "${sub}"`} (known: ${Object.keys(SUBCOMMANDS).join(', ')})\n\n${usage}\n`)
      return 2
    }
    const missing = missingPrerequisites()
    if (missing.length > 0) throw new BenchUnavailableError(missing)
    const script = benchScript(packageRoot(), rel)
    const child = spawn(process.execPath, [script, ...rest], { stdio: 'inherit' })
    const forward = (sig: NodeJS.Signals): void => { child.kill(sig) }
    process.on('SIGTERM', forward)
    // SIGINT from a terminal reaches the child through the process group; a
    // SIGINT sent to this pid alone must still stop it (and its cleanup runs there).
    process.on('SIGINT', forward)
    try {
      return await new Promise<number>((resolve, reject) => {
        child.once('error', err => reject(new BenchUnavailableError([`node could not start ${script}`], { cause: err })))
        child.once('exit', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : 1)))
      })
    } finally {
      process.off('SIGTERM', forward)
      process.off('SIGINT', forward)
    }
  }
}
