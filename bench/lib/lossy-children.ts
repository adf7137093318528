/**
 * Child processes of the lossy-link benchmark: the echo server
 * (bench/loopback-server.ts) on side B and the scenario client
 * (bench/lossy-client.ts) on side A, both started with `ip netns exec`
 * through the lab so they are killed with it; plus the per-run seed mixer.
 */
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { ClientJob, ClientResult } from '../lossy-client.js'
import { ADDR_B, type LinkLab } from './lossy-netns.js'
import type { TransportDef } from './lossy-profiles.js'

export interface Server { info: { url: string, identity: string | undefined, mode?: string }, stop: () => void }

export async function startServer (lab: LinkLab, t: TransportDef): Promise<Server> {
  const script = fileURLToPath(new URL('../loopback-server.js', import.meta.url))
  const child = lab.spawnIn('b', process.execPath, [script, t.listen.replace('HOST', ADDR_B)], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...t.env } })
  child.stdin?.on('error', () => {})
  child.stderr?.resume()
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start within 30 s')), 30_000)
    rl.once('line', l => { clearTimeout(timer); resolve(l) })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`server exited (${String(code)})`)) })
  })
  rl.close()
  child.stdout?.resume()
  const msg = JSON.parse(line) as Server['info'] & { error?: string, reason?: string }
  if (msg.error !== undefined) throw new Error(msg.reason ?? msg.error)
  return { info: msg, stop: () => { child.stdin?.end(); setTimeout(() => child.kill('SIGKILL'), 3000).unref() } }
}

export async function runClient (lab: LinkLab, job: ClientJob, env?: Record<string, string>): Promise<ClientResult[]> {
  const script = fileURLToPath(new URL('../lossy-client.js', import.meta.url))
  const child = lab.spawnIn('a', process.execPath, [script, JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { if (err.length < 2000) err += d })
  const limit = job.scenarios.length * (job.durationMs + 90_000)
  await new Promise<void>(resolve => {
    const timer = setTimeout(() => child.kill('SIGKILL'), limit)
    child.once('exit', () => { clearTimeout(timer); resolve() })
  })
  const results = out.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as ClientResult)
  for (const s of job.scenarios) {
    if (results.find(r => r.scenario === s) === undefined) results.push({ scenario: s, error: `client died: ${err.trim().split('\n').slice(-1)[0] ?? 'no output'}` })
  }
  return results
}

/** A 32-bit seed from the base seed and the run's coordinates (profile, transport, run, attempt). */
export function seedFor (base: number, ...parts: number[]): number {
  let h = base >>> 0
  for (const p of parts) h = (Math.imul(h ^ p, 2654435761) + 0x9e3779b9) >>> 0
  return h
}
