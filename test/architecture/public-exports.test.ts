/**
 * The package's public export names (src/index.ts) are a contract: the list in
 * public-exports.json was taken from the build before the layout change
 * (issue 11). A removed or renamed export fails here; an added one must be
 * added to the list on purpose.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'

t.test('src/index.ts exports exactly the recorded names', async (t) => {
  const expected = JSON.parse(readFileSync(new URL('./public-exports.json', import.meta.url), 'utf8')) as string[]
  const mod = await import('../../src/index.js') as Record<string, unknown>
  t.same(Object.keys(mod).sort(), [...expected].sort())
})
