/**
 * Runs the built CLI (dist/cli/main.js) in a child process for the bench
 * smoke tests, collecting its output. On timeout it sends SIGINT, not
 * SIGKILL: the lossy bench removes its namespaces on SIGINT.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

export function cli (args: string[], timeoutMs: number): Promise<{ code: number | null, out: string, err: string }> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs)
    child.once('exit', code => { clearTimeout(timer); resolve({ code, out, err }) })
  })
}
