/**
 * A hub in a child process (fixtures/hub.mjs, built code in dist/) for the
 * attacks whose figures must be the hub's alone: RSS growth, and file
 * descriptors under `ulimit -n`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { testdir } from '../testdir.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/hub.mjs', import.meta.url))

export interface HubChild {
  urls: string[]
  admin: string
  wtLeaf: string | undefined
  child: ChildProcess
  rss: () => Promise<{ rss: number, pending: number }>
  token: (node: string) => Promise<string>
  /** Sum of a counter's series in /metrics whose labels include `labels`. */
  counter: (name: string, labels: Record<string, string>) => Promise<number>
}

export async function startHubChild (t: Test, options: Record<string, unknown>, opts: { ulimit?: number } = {}): Promise<HubChild> {
  const dataDir = testdir(t, {}) + '/hub'
  const args = ['--expose-gc', FIXTURE, dataDir, JSON.stringify(options)]
  const child = opts.ulimit === undefined
    ? spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn('/bin/sh', ['-c', `ulimit -n ${opts.ulimit} && exec "$0" "$@"`, process.execPath, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const waiting: Array<(l: string) => void> = []
  lines.on('line', l => { waiting.shift()?.(l) })
  const next = async (): Promise<Record<string, unknown>> => await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('hub child did not answer')) }, 60_000)
    waiting.push(l => { clearTimeout(timer); resolve(JSON.parse(l) as Record<string, unknown>) })
  })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  t.teardown(async () => {
    child.stdin?.end()
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  })
  const hello = await next()
  const ask = async (cmd: string): Promise<Record<string, unknown>> => {
    const p = next()
    child.stdin?.write(cmd + '\n')
    return await p
  }
  const admin = hello.admin as string
  return {
    urls: hello.urls as string[],
    admin,
    wtLeaf: hello.wtLeaf as string | undefined,
    child,
    rss: async () => await ask('rss') as { rss: number, pending: number },
    token: async node => (await ask(`token ${node}`)).token as string,
    counter: async (name, labels) => {
      const text = await (await fetch(`${admin}/metrics`)).text()
      let sum = 0
      for (const line of text.split('\n')) {
        if (!line.startsWith(name + '{')) continue
        if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').at(-1))
      }
      return sum
    }
  }
}
