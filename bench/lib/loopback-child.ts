/**
 * Spawning the echo server (../loopback-server) in a child process.
 *
 * The server module is resolved next to this one with the same extension:
 * compiled runs (`node dist-bench/bench/transport-loopback.js`) spawn the .js,
 * while a TypeScript run (the tap smoke test, through tap's loader) spawns
 * the .ts with the same `--import` loader flags (see childExecArgv).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TransportUnavailableError } from '../../src/errors.js'
import type { ServerInfo } from './loopback-protocol.js'

const START_TIMEOUT_MS = 30_000

export interface ChildServer {
  info: ServerInfo
  pid: number | undefined
  stop (): Promise<void>
}

const EXT = extname(fileURLToPath(import.meta.url)) // '.ts' or '.js'

function serverPath (): string {
  return fileURLToPath(new URL(`../loopback-server${EXT}`, import.meta.url))
}

/**
 * Node flags the child needs: none for compiled .js; for .ts, the module
 * loader flags this process runs with (tap: `--import=…typescript…`). Nothing
 * else is inherited: `-e` scripts or `--inspect` ports must not reach the child.
 */
function childExecArgv (): string[] {
  if (EXT !== '.ts') return []
  const keep: string[] = []
  const argv = process.execArgv
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (/^--(import|loader|experimental-loader|require)=/.test(a) || a === '--enable-source-maps') keep.push(a)
    else if (/^(--import|--loader|--experimental-loader|--require|-r)$/.test(a) && argv[i + 1] !== undefined) keep.push(a, argv[++i] as string)
  }
  return keep
}

/** Start a child echo server listening on `listenUrl`; resolves once it printed its URL and identity. */
export async function startChildServer (listenUrl: string): Promise<ChildServer> {
  const child = spawn(process.execPath, [...childExecArgv(), serverPath(), listenUrl], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (d: string) => { if (stderr.length < 8192) stderr += d })
  child.stdin?.on('error', () => {}) // EPIPE once the child is gone
  child.on('error', () => {}) // reported through the start promise / exit
  const info = await new Promise<ServerInfo>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => fail(new Error(`server for ${listenUrl} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS)
    const onData = (d: string): void => {
      out += d
      const nl = out.indexOf('\n')
      if (nl < 0) return
      cleanup()
      try {
        const msg = JSON.parse(out.slice(0, nl)) as ServerInfo & { error?: string, code?: string, reason?: string }
        if (msg.error !== undefined) {
          child.kill('SIGKILL')
          reject(msg.code === TransportUnavailableError.code
            ? new TransportUnavailableError(listenUrl.split(':')[0] ?? listenUrl, msg.reason ?? msg.error)
            : new Error(`server for ${listenUrl}: ${msg.error}`))
        } else resolve(msg)
      } catch (err) {
        reject(new Error(`server for ${listenUrl} printed garbage: ${out.slice(0, 200)}`, { cause: err }))
      }
    }
    const onExit = (code: number | null, signal: string | null): void => {
      fail(new Error(`server for ${listenUrl} exited (${signal ?? code}) before listening: ${stderr.trim().slice(0, 500)}`))
    }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.off('exit', onExit)
    }
    function fail (err: Error): void {
      cleanup()
      child.kill('SIGKILL')
      reject(err)
    }
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', onData)
    child.once('exit', onExit)
  })
  child.stdout?.resume() // nothing more expected; never let a pipe fill up
  return { info, pid: child.pid, stop: async () => await stopChild(child) }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(timer)
}
