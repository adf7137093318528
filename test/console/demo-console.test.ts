/**
 * `npx edgefabric demo` prints the console URL, and that URL serves the
 * console and its API while the demo runs (the newcomer's entry point,
 * issue 15). Runs the built CLI (needs `npm run build`) in a child process.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { testdir } from '../testdir.js'

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

t.test('demo prints a working console URL', async t => {
  const tmp = testdir(t, {})
  const child = spawn(process.execPath, [BIN, 'demo', '--duration', '5s'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } })
  child.on('error', () => {})
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const exit = once(child, 'exit')
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', line => {
      const m = /^console: (http:\/\/127\.0\.0\.1:\d+\/console\/) +\(read-only on this machine; with actions: (\S+)\)$/.exec(line)
      if (m !== null) resolve(m[1] as string)
    })
    child.once('exit', () => reject(new Error('demo exited without printing the console URL')))
  })
  const page = await fetch(url)
  t.equal(page.status, 200)
  t.match(await page.text(), /<script type="module" src="console.js">/)
  let info: { role: string, summary: { nodes: number } } | undefined
  for (let i = 0; i < 100 && (info?.summary.nodes ?? 0) < 2; i++) {
    info = await (await fetch(new URL('../api/info', url))).json() as { role: string, summary: { nodes: number } }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.equal(info?.role, 'hub')
  t.equal(info?.summary.nodes, 2, 'the demo\'s two edges are listed')
  const [code] = await exit
  t.equal(code, 0)
})
