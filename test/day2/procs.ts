/**
 * Helpers for day-2 tests: the real CLI as child processes (dist/cli/main.js,
 * built by `npm run build`), line waiters on stdout, free loopback ports.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

export interface Proc {
  child: ChildProcess
  lines: string[]
  waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray>
  stderr: () => string
  /** Resolves with the exit code; SIGKILLs after `ms`. */
  exit: (ms?: number) => Promise<number | null>
}

/** `waitMs`: the default deadline of waitFor(). */
export function start (args: string[], opts: { env?: NodeJS.ProcessEnv, command?: string[], waitMs?: number } = {}): Proc {
  const cmd = opts.command ?? [process.execPath, BIN]
  const child = spawn(cmd[0] as string, [...cmd.slice(1), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } })
  child.on('error', () => {})
  const lines: string[] = []
  let err = ''
  const waiters: Array<{ re: RegExp, resolve: (m: RegExpMatchArray) => void }> = []
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
    lines.push(line)
    for (const w of [...waiters]) {
      const m = w.re.exec(line)
      if (m !== null) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m) }
    }
  })
  child.stderr?.on('data', (c: Buffer) => { err += c.toString() })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  return {
    child,
    lines,
    stderr: () => err,
    waitFor (re, ms = opts.waitMs ?? 20_000) {
      for (const line of lines) { const m = re.exec(line); if (m !== null) return Promise.resolve(m) }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} (stdout: ${lines.join(' | ')}; stderr: ${err.slice(-800)})`)), ms)
        waiters.push({ re, resolve: m => { clearTimeout(timer); resolve(m) } })
      })
    },
    async exit (ms = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      const timer = setTimeout(() => child.kill('SIGKILL'), ms)
      const code = await exited
      clearTimeout(timer)
      return code
    }
  }
}

export async function run (args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const p = start(args, opts)
  const code = await p.exit(60_000)
  await new Promise(resolve => setImmediate(resolve))
  return { code, stdout: p.lines.join('\n'), stderr: p.stderr() }
}

/** A loopback TCP port that was free a moment ago. */
export async function freePort (): Promise<number> {
  const s = createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as { port: number }).port
  s.close()
  await once(s, 'close')
  return port
}

export async function eventually (check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

export async function httpGet (url: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  const res = await fetch(url, { headers })
  return { status: res.status, body: await res.text() }
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
