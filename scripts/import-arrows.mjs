#!/usr/bin/env node
/**
 * The layer rules of ARCHITECTURE.md as data, and a checker over src/'s import
 * graph (static `import … from`, `export … from`, `import '…'`, dynamic
 * `import('…')` and `import('…').T` type references). A layer is a folder of
 * src/ (device/cloud and device/edge are layers of their own); the loose
 * top-level modules are layers named after their file.
 *
 * Run directly (`node scripts/import-arrows.mjs`) it prints every import that
 * breaks an arrow and exits 1; test/architecture/import-arrows.test.ts runs it
 * in CI.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const base = ['errors', 'util']
/** Which layers each layer may import (besides itself). Keep ARCHITECTURE.md in step. */
export const ALLOWED = Object.freeze({
  errors: [],
  util: ['errors'],
  codec: base,
  identity: base,
  config: base,
  ops: base,
  types: [],
  transport: ['codec', 'identity', ...base],
  session: ['transport', 'codec', ...base],
  reliable: ['session', 'transport', 'codec', 'ops', ...base],
  device: ['codec', ...base],
  'device/cloud': ['device', 'reliable', 'codec', 'identity', 'ops', ...base],
  'device/edge': ['device', 'reliable', 'codec', 'identity', 'ops', ...base],
  // Cluster mode (issue 17): NATS JetStream behind narrow interfaces; it never imports hub. It
  // implements the stores of reliable (ReliableStore) and device/cloud (DeviceKv) in JetStream.
  cluster: ['device', 'device/cloud', 'reliable', 'identity', 'codec', 'ops', ...base],
  hub: ['cluster', 'device', 'device/cloud', 'reliable', 'session', 'transport', 'identity', 'config', 'ops', 'codec', ...base],
  edge: ['device', 'device/edge', 'reliable', 'session', 'transport', 'identity', 'config', 'ops', 'codec', ...base],
  index: ['device', 'device/cloud', 'device/edge', 'hub', 'edge', 'reliable', 'session', 'transport', 'identity', 'config', 'ops', 'codec', ...base],
  cli: '*'
})

/** The layer a path under src/ (relative to src/) belongs to. */
export function layerOf (rel) {
  const parts = rel.split(/[\\/]/)
  if (parts.length === 1) return parts[0].replace(/\.(d\.)?[jt]s$/, '')
  if (parts[0] === 'device' && parts.length > 2) return `device/${parts[1]}`
  return parts[0]
}

const SPEC = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\1/g

/**
 * Violations in a set of files: `files` maps a path relative to src/ to its
 * text. Returns `{ file, spec, from, to }` for each import whose arrow is not
 * allowed, and for each layer missing from ALLOWED.
 */
export function checkArrows (files) {
  const out = []
  for (const [file, text] of files) {
    const from = layerOf(file)
    const allowed = ALLOWED[from]
    for (const m of text.matchAll(SPEC)) {
      const target = relative('.', join(dirname(file), m[2]))
      if (target.startsWith('..')) { out.push({ file, spec: m[2], from, to: '(outside src)' }); continue }
      const to = layerOf(target)
      if (to === from) continue
      if (allowed === '*') continue
      if (allowed === undefined || !allowed.includes(to)) out.push({ file, spec: m[2], from, to })
    }
  }
  return out
}

export function readSrc (srcDir) {
  const files = new Map()
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (/\.(ts|mts|js|mjs)$/.test(e.name)) files.set(relative(srcDir, p).split(sep).join('/'), readFileSync(p, 'utf8'))
    }
  }
  walk(srcDir)
  return files
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src')
  const bad = checkArrows(readSrc(src))
  for (const v of bad) console.log(`src/${v.file}: imports '${v.spec}' (${v.from} -> ${v.to}) — not an allowed arrow (ARCHITECTURE.md)`)
  console.log(bad.length === 0 ? 'import arrows: ok' : `import arrows: ${bad.length} violation(s)`)
  process.exitCode = bad.length === 0 ? 0 : 1
}
