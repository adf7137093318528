/**
 * A server binary (mosquitto, nats-server) run by a benchmark on 127.0.0.1:
 * pick a free port, start it, wait until the port accepts connections, stop
 * it. Shared by bench/reliable.ts and the sessions peers (./sessions-peers.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'

/** A TCP port free on 127.0.0.1 right now (the kernel's pick). */
export async function freePort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', () => resolve()))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>(resolve => srv.close(() => resolve()))
  return port
}

/** Spawn `cmd args`; resolves once 127.0.0.1:`port` accepts a connection (rejects with its stderr otherwise). */
export async function startListening (cmd: string, args: string[], port: number, timeoutMs = 10_000): Promise<ChildProcess> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 8000) stderr += d })
  proc.on('error', () => {})
  const end = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>(resolve => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return proc
    if (Date.now() > end || proc.exitCode !== null) {
      proc.kill('SIGKILL')
      throw new Error(`${cmd} did not start: ${stderr.slice(-800)}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** SIGTERM, then SIGKILL after `killAfterMs`; resolves when the process is gone. */
export async function stopProcess (proc: ChildProcess, killAfterMs = 10_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const gone = new Promise(resolve => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  const t = setTimeout(() => proc.kill('SIGKILL'), killAfterMs)
  await gone
  clearTimeout(t)
}
