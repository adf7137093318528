/**
 * A real mosquitto (Debian package `mosquitto`, /usr/sbin/mosquitto) started
 * by a test on a free loopback port with a temporary config. Queues are
 * unbounded (`max_queued_messages 0`): the default of 1000 PUBACKs and then
 * silently drops for offline persistent sessions (DESIGN.md §11). Unlimited
 * in-flight window, so the whole queue follows CONNACK at once (the trap).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer, connect, type AddressInfo } from 'node:net'

type TapTest = import('tap').Test

export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

export async function startMosquitto (t: TapTest, dir: string): Promise<{ url: string, port: number, proc: ChildProcess }> {
  const port = await freePort()
  const conf = `${dir}/mosquitto.conf`
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n`)
  const proc = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr?.on('data', d => { stderr += String(d) })
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGTERM') })
  const until = Date.now() + 10_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`mosquitto exited: ${stderr}`)
    const ok = await new Promise<boolean>(resolve => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) break
    if (Date.now() > until) throw new Error(`mosquitto did not listen on ${port}: ${stderr}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return { url: `mqtt://127.0.0.1:${port}`, port, proc }
}

/** Run a mosquitto client tool (mosquitto_pub / mosquitto_sub) and collect stdout. */
export function runTool (cmd: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 15_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', d => { stdout += String(d) })
    p.stderr.on('data', d => { stderr += String(d) })
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`${cmd} timed out: ${stderr}`)) }, timeoutMs)
    p.on('error', err => { clearTimeout(timer); reject(err) })
    p.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** mosquitto_sub with `-d`: resolves `subscribed` once its SUBACK arrived (no fixed sleeps), `result` with the JSON payload lines. */
export function subscribeTool (args: string[], timeoutMs = 20_000): { subscribed: Promise<void>, result: Promise<{ code: number | null, json: any[], stderr: string }> } {
  // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, the SUBACK line would never show
  const p = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-d', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  let onSub: () => void = () => {}
  const subscribed = new Promise<void>(resolve => { onSub = resolve })
  p.stdout.on('data', d => { stdout += String(d); if (/received SUBACK/.test(stdout)) onSub() })
  p.stderr.on('data', d => { stderr += String(d) })
  const result = new Promise<{ code: number | null, json: any[], stderr: string }>((resolve, reject) => {
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`mosquitto_sub timed out: ${stdout} ${stderr}`)) }, timeoutMs)
    p.on('error', err => { clearTimeout(timer); reject(err) })
    p.on('close', code => {
      clearTimeout(timer)
      resolve({ code, json: stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l)), stderr })
    })
  })
  return { subscribed, result }
}
