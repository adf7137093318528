/**
 * Command-line arguments of bench/transport-loopback.ts (see its header for
 * usage). `--smoke` is the test suite's end-to-end check: ws + memory only,
 * tiny durations and no JSON, so it finishes in seconds; its numbers mean nothing.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BenchOptions } from '../transport-loopback.js'

/** The repository root (where package.json is), from this module's location (bench/ or dist-bench/bench/). */
function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir
    dir = dirname(dir)
  }
  return process.cwd()
}

export function parseArgs (argv: string[]): Partial<BenchOptions> {
  const o: Partial<BenchOptions> = {}
  let json: string | false | undefined
  let smoke = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${a} needs a value`)
      return v
    }
    const int = (min: number): number => {
      const n = Number(value())
      if (!Number.isInteger(n) || n < min) throw new Error(`${a} must be an integer ≥ ${min}`)
      return n
    }
    if (a === '--quick') { o.runs ??= 3; o.durationMs ??= 1000; o.warmupMs ??= 500 } else if (a === '--smoke') smoke = true
    else if (a === '--runs') o.runs = int(1)
    else if (a === '--duration') o.durationMs = int(10)
    else if (a === '--concurrency') o.concurrency = int(1)
    else if (a === '--transports') o.transports = value().split(',').map(s => s.trim()).filter(s => s !== '')
    else if (a === '--json') json = value()
    else if (a === '--no-json') json = false
    else throw new Error(`unknown argument ${a}`)
  }
  if (smoke) {
    // Proves the pipeline end to end in a few seconds; the numbers mean nothing.
    o.transports ??= ['ws', 'memory']
    o.runs = Math.min(o.runs ?? 2, 2)
    o.durationMs = Math.min(o.durationMs ?? 100, 100)
    o.warmupMs = 100
    o.concurrency = Math.min(o.concurrency ?? 4, 4)
    o.bulkEnvelopeBytes = 256 * 1024
  }
  if (json !== false && (json !== undefined || !smoke)) {
    o.jsonPath = json ?? join(repoRoot(), 'bench', 'out', `transport-loopback-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  }
  return o
}

