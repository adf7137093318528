/**
 * Compiles the lossy-link C tools (bench/lossy/wire.c, blast.c) with the
 * machine's gcc into a cache directory, keyed by a hash of the source, so a
 * run needs no prebuilt binaries and an edited source is never stale.
 * Cache: node_modules/.cache/edgefabric in the package root when writable,
 * else os.tmpdir()/edgefabric-cache.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { packageRoot } from '../../src/cli/bench.js'
import { LossyToolBuildError } from './lossy-errors.js'

/** The C sources live in bench/lossy of the package root (not copied by tsc into dist-bench). */
export function sourcePath (name: 'wire' | 'blast'): string {
  return join(packageRoot(), 'bench', 'lossy', `${name}.c`)
}

function cacheDir (): string {
  const preferred = join(packageRoot(), 'node_modules', '.cache', 'edgefabric')
  try {
    mkdirSync(preferred, { recursive: true })
    accessSync(preferred, constants.W_OK)
    return preferred
  } catch {
    const fallback = join(tmpdir(), 'edgefabric-cache')
    mkdirSync(fallback, { recursive: true })
    return fallback
  }
}

/** Path of the compiled tool, building it when the cache has no binary for this source. */
export function buildTool (name: 'wire' | 'blast'): string {
  const src = sourcePath(name)
  let text: Buffer
  try {
    text = readFileSync(src)
  } catch (err) {
    throw new LossyToolBuildError(`cannot read ${src} (the package must ship bench/lossy/*.c)`, { cause: err })
  }
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 16)
  const out = join(cacheDir(), `${name}-${hash}`)
  if (existsSync(out)) return out
  const tmp = `${out}.${process.pid}.tmp`
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-o', tmp, src], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
  } catch (err) {
    const e = err as { code?: string, stderr?: Buffer }
    if (e.code === 'ENOENT') throw new LossyToolBuildError('gcc is not installed (needed to build the link emulator)', { cause: err })
    throw new LossyToolBuildError(`gcc failed on ${src}: ${e.stderr?.toString().trim().slice(0, 800) ?? String(err)}`, { cause: err })
  }
  renameSync(tmp, out) // atomic: a parallel run sees either no binary or a whole one
  return out
}
