/**
 * Test harness: a real NATS cluster with JetStream (Debian's `nats-server`,
 * DESIGN.md §10b) on loopback, started by the test. Each server gets its own
 * config file and store directory under the test's dir, client/cluster/monitor
 * ports chosen free, and can be SIGKILLed and restarted on the same ports and
 * store (what a crashed machine coming back looks like).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync, existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Path of nats-server, or undefined when it is not installed (the test then skips with a reason). */
export function natsServerPath (): string | undefined {
  for (const p of [process.env.NATS_SERVER, '/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']) {
    if (p !== undefined && p !== '' && existsSync(p)) return p
  }
  const r = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' })
  const p = r.stdout.trim()
  return p === '' ? undefined : p
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a !== null ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

export interface NatsServerProc {
  name: string
  clientPort: number
  clusterPort: number
  httpPort: number
  url: string
  proc: ChildProcess | undefined
  log: string[]
}

export class NatsCluster {
  readonly servers: NatsServerProc[]
  readonly #dir: string
  readonly #bin: string

  private constructor (dir: string, bin: string, servers: NatsServerProc[]) {
    this.#dir = dir
    this.#bin = bin
    this.servers = servers
  }

  /** Client URLs of every server (what hubs get as `cluster.servers`). */
  get urls (): string[] { return this.servers.map(s => s.url) }

  /** Start `size` servers clustered with JetStream and wait until JetStream answers. */
  static async start (dir: string, size = 3, bin = natsServerPath()): Promise<NatsCluster> {
    if (bin === undefined) throw new Error('nats-server is not installed')
    const servers: NatsServerProc[] = []
    for (let i = 0; i < size; i++) {
      const clientPort = await freePort()
      const clusterPort = await freePort()
      const httpPort = await freePort()
      servers.push({ name: `n${i + 1}`, clientPort, clusterPort, httpPort, url: `nats://127.0.0.1:${clientPort}`, proc: undefined, log: [] })
    }
    const c = new NatsCluster(dir, bin, servers)
    // A test that times out may not reach its teardown: never leave servers behind.
    process.once('exit', () => { for (const s of servers) s.proc?.kill('SIGKILL') })
    for (const s of servers) c.#writeConfig(s)
    await Promise.all(servers.map(async s => { await c.#spawn(s) }))
    await Promise.all(servers.map(async s => { await c.#waitHealthy(s, 30_000) }))
    return c
  }

  #writeConfig (s: NatsServerProc): void {
    const sdir = join(this.#dir, s.name)
    mkdirSync(join(sdir, 'js'), { recursive: true })
    const routes = this.servers.filter(o => o !== s).map(o => `nats-route://127.0.0.1:${o.clusterPort}`)
    const conf = [
      `server_name: ${s.name}`,
      `listen: 127.0.0.1:${s.clientPort}`,
      `http: 127.0.0.1:${s.httpPort}`,
      'jetstream {',
      `  store_dir: "${join(sdir, 'js')}"`,
      '  max_memory_store: 256MB',
      '  max_file_store: 2GB',
      '}',
      ...(this.servers.length > 1
        ? ['cluster {', '  name: efc', `  listen: 127.0.0.1:${s.clusterPort}`, `  routes: [${routes.join(', ')}]`, '}']
        : [])
    ].join('\n')
    writeFileSync(join(sdir, 'nats.conf'), conf + '\n')
  }

  async #spawn (s: NatsServerProc): Promise<void> {
    const p = spawn(this.#bin, ['-c', join(this.#dir, s.name, 'nats.conf')], { stdio: ['ignore', 'pipe', 'pipe'] })
    s.proc = p
    s.log = []
    const keep = (b: Buffer): void => { s.log.push(b.toString()); if (s.log.length > 200) s.log.shift() }
    p.stdout?.on('data', keep)
    p.stderr?.on('data', keep)
    p.on('error', err => { s.log.push(String(err)) })
  }

  /** /healthz answers 200 once the server (and its JetStream) is up. */
  async #waitHealthy (s: NatsServerProc, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (s.proc?.exitCode !== null && s.proc?.exitCode !== undefined) throw new Error(`nats-server ${s.name} exited: ${s.log.join('')}`)
      try {
        const r = await fetch(`http://127.0.0.1:${s.httpPort}/healthz`)
        if (r.status === 200) return
      } catch { /* not listening yet */ }
      await sleep(100)
    }
    throw new Error(`nats-server ${s.name} not healthy after ${timeoutMs} ms: ${s.log.join('').slice(-2000)}`)
  }

  /** SIGKILL one server (no clean shutdown: its Raft peers see it vanish). */
  async kill (i: number): Promise<void> {
    const s = this.servers[i]
    if (s?.proc === undefined) return
    const p = s.proc
    s.proc = undefined
    if (p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise<void>(resolve => p.once('exit', () => resolve()))
    p.kill('SIGKILL')
    await exited
  }

  /** Start a killed server again on the same ports and store directory. */
  async restart (i: number, waitMs = 30_000): Promise<void> {
    const s = this.servers[i]
    if (s === undefined) throw new Error(`no server ${i}`)
    if (s.proc !== undefined) await this.kill(i)
    await this.#spawn(s)
    await this.#waitHealthy(s, waitMs)
  }

  running (i: number): boolean { return this.servers[i]?.proc !== undefined }

  /** Stop every server (SIGTERM, then SIGKILL after 5 s). */
  async stop (): Promise<void> {
    await Promise.all(this.servers.map(async s => {
      const p = s.proc
      s.proc = undefined
      if (p === undefined || p.exitCode !== null || p.signalCode !== null) return
      const exited = new Promise<void>(resolve => p.once('exit', () => resolve()))
      p.kill('SIGTERM')
      const t = setTimeout(() => p.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(t)
    }))
  }
}
