/**
 * The layer arrows of ARCHITECTURE.md hold for every import in src/, and the
 * checker itself catches a planted violation (so this test can fail).
 */
import t from 'tap'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
// @ts-expect-error — plain ESM script without type declarations
import { checkArrows, layerOf, readSrc, ALLOWED } from '../../scripts/import-arrows.mjs'

const src = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src')

type Violation = { file: string, spec: string, from: string, to: string }

t.test('every import in src/ follows an allowed arrow', async (t) => {
  const files = readSrc(src) as Map<string, string>
  t.ok(files.size > 100, `read ${files.size} files`)
  const bad = checkArrows(files) as Violation[]
  t.same(bad.map((v) => `src/${v.file}: ${v.from} -> ${v.to} ('${v.spec}')`), [])
  const layers = new Set([...files.keys()].map((f) => layerOf(f) as string))
  for (const l of layers) t.ok(l in ALLOWED, `layer ${l} has its arrows written down`)
})

t.test('the checker catches sibling roles and upward imports', async (t) => {
  const planted = new Map<string, string>([
    ['edge/x.ts', "import { Hub } from '../hub/hub.js'"],
    ['hub/y.ts', "export { nodeKeyId } from '../edge/edge-node.js'"],
    ['device/edge/z.ts', "const m = await import('../cloud/registry.js')"],
    ['transport/w.ts', "import type { Hub } from '../hub/hub.js'"],
    ['codec/v.ts', "import '../transport/index.js'"],
    ['hub/ok.ts', "import { decodeJoinToken } from '../identity/token.js'"],
    ['cli/any.ts', "import { EdgeNode } from '../edge/edge-node.js'"]
  ])
  const bad = (checkArrows(planted) as Violation[]).map((v) => `${v.from}->${v.to}`)
  t.same(bad, ['edge->hub', 'hub->edge', 'device/edge->device/cloud', 'transport->hub', 'codec->transport'])
})
