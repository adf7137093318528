/**
 * Issue 12 "Packaging": ESM-only said plainly — require('edgefabric') fails
 * with a message saying so; a LICENSE in the package; the README example
 * type-checks under `tsc --init` defaults, and with skipLibCheck off the only
 * errors are inside lmdb's bundled types (the one documented setting).
 */
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

const exec = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc')

function project (t: { testdir: (f: Record<string, string>) => string }): string {
  const dir = t.testdir({ 'package.json': JSON.stringify({ type: 'module' }) })
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(ROOT, join(dir, 'node_modules', 'edgefabric'))
  return dir
}

t.test('require() fails with a message saying the package is ESM-only', async t => {
  const dir = project(t)
  writeFileSync(join(dir, 'r.cjs'), "try { require('edgefabric') } catch (e) { console.log(e.code + ' ' + e.message) }\n")
  const { stdout } = await exec(process.execPath, [join(dir, 'r.cjs')])
  t.match(stdout, /^ERR_REQUIRE_ESM edgefabric is ESM-only: use `import/)
  writeFileSync(join(dir, 'i.cjs'), "import('edgefabric').then(m => console.log(typeof m.Hub))\n")
  t.equal((await exec(process.execPath, [join(dir, 'i.cjs')])).stdout.trim(), 'function', 'dynamic import works from CommonJS')
})

t.test('LICENSE (Apache-2.0) is in the package', async t => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { license: string, files: string[] }
  t.equal(pkg.license, 'Apache-2.0')
  t.ok(pkg.files.includes('LICENSE'))
  t.match(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/)
  const { stdout } = await exec('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 })
  const files = (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]?.files.map(f => f.path) ?? []
  t.ok(files.includes('LICENSE'), 'npm pack includes LICENSE')
  t.ok(files.includes('cjs/index.cjs'), 'and the CommonJS stub')
})

t.test('the README example type-checks under tsc --init defaults', async t => {
  const dir = project(t)
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const m = /<!-- example: hub-edge[^\n]*\n```js\n([\s\S]*?)```/.exec(readme)
  t.ok(m, 'README has the hub-edge example')
  writeFileSync(join(dir, 'example.ts'), (m as RegExpExecArray)[1] as string)
  await exec(TSC, ['--init'], { cwd: dir })
  const ok = await exec(TSC, ['--noEmit', '-p', '.'], { cwd: dir }).then(() => '', (e: { stdout: string }) => e.stdout)
  t.equal(ok, '', 'no errors with the generated tsconfig.json')
  const strictLib = await exec(TSC, ['--noEmit', '-p', '.', '--skipLibCheck', 'false'], { cwd: dir }).then(() => '', (e: { stdout: string }) => e.stdout)
  const errors = strictLib.split('\n').filter(l => /error TS/.test(l))
  t.ok(errors.every(l => /node_modules\/(lmdb|@nats-io\/[a-z-]+)\//.test(l)), `with skipLibCheck off, errors only inside lmdb's and the NATS client's bundled types:\n${errors.join('\n')}`)
})
