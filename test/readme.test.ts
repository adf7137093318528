/**
 * The README's library example is executed as written (importing the package
 * by its name, which resolves to this package through its "exports").
 */
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { testdir } from './testdir.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

t.test('README hub-edge example runs and prints the reply', async t => {
  const m = /<!-- example: hub-edge[^>]*-->\s*```js\n([\s\S]*?)```/.exec(readme)
  t.ok(m, 'the example block exists')
  const dir = testdir(t, {})
  const file = join(dir, 'example.mjs')
  writeFileSync(file, m?.[1] ?? '')
  const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: dir, timeout: 30_000 })
  t.match(stdout, /celsius: 21\.5/)
})

t.test('README starts with the install+run and test commands', async t => {
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  t.match(firstBlock, /npm ci && npx edgefabric demo/)
  t.match(firstBlock, /npm test/)
})
