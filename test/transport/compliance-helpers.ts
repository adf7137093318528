/**
 * Helpers for the transport compliance suite: set up a listener + dialed
 * pair, collect messages, wait with deadlines (never hang a test).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { dial, listen } from '../../src/transport/index.js'
import type { Channel, Connection, DialOptions, Listener, ListenOptions } from '../../src/transport/types.js'

export interface ComplianceHarness {
  /** URL to listen on, port 0 (e.g. `ws://127.0.0.1:0`). */
  listenUrl: string
  /** Extra listen options (identity material). */
  listenOptions?: () => Partial<ListenOptions> | Promise<Partial<ListenOptions>>
  /** Extra dial options for a given listener (e.g. `expectedRemoteIdentity: listener.identity`). */
  dialOptions?: (listener: Listener) => Partial<DialOptions>
  /** An identity the listener does not have; the dial pinning it must fail. */
  wrongIdentity?: string
  /** A URL of the same scheme where nothing listens. */
  deadUrl: string
  /**
   * Certificate-chain transports (wss://, https://): a CA (PEM cert + key) the
   * suite issues listener leaves from, to check that pinning the CA works and
   * that only a CA which SIGNED the leaf satisfies the pin (the join token pins
   * the hub CA; DESIGN.md §9). Leaves are presented as `identity: { cert, key }`.
   */
  caPinning?: { cert: string, key: string }
  /** Max ms to notice a SIGKILLed peer. @default 5000 */
  peerKillDetectMs?: number
  /** Listen URL for the child-process peer (test/fixtures/transport-peer.mjs). */
  peerListenUrl?: string
  /** Reasons to skip capability-dependent tests (printed). */
  skip?: {
    identity?: string
    independentChannels?: string
    peerKill?: string
    closeReason?: string
    caPinning?: string
  }
}

export interface Pair {
  listener: Listener
  client: Connection
  server: Connection
}

export async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([p, deadline])
  } finally {
    clearTimeout(timer)
  }
}

export async function makePair (h: ComplianceHarness, listenExtra: Partial<ListenOptions> = {}, dialExtra: Partial<DialOptions> = {}): Promise<Pair> {
  let resolveServer!: (c: Connection) => void
  const serverP = new Promise<Connection>(resolve => { resolveServer = resolve })
  const listener = await listen(h.listenUrl, {
    ...(await h.listenOptions?.()),
    ...listenExtra,
    onConnection: c => resolveServer(c)
  })
  const client = await dial(listener.url, { ...h.dialOptions?.(listener), ...dialExtra })
  const server = await withTimeout(serverP, 5000, 'inbound connection')
  return { listener, client, server }
}

export async function teardown (pair: Pair): Promise<void> {
  pair.client.abort(new Error('teardown'))
  pair.server.abort(new Error('teardown'))
  await pair.listener.close(100)
}

export function msg (seq: number, content: unknown = { seq }, channel: Channel = 'normal'): Envelope {
  return newMessage({ source: 'test', group: 'g', operation: 'update', resource: `ns/thing/${seq}`, content, priority: channel })
}

/** Collect `n` messages from a connection (resolves with them in arrival order). */
export function collect (conn: Connection, n: number, ms = 20_000): Promise<Array<{ env: Envelope, channel: Channel }>> {
  const got: Array<{ env: Envelope, channel: Channel }> = []
  return withTimeout(new Promise(resolve => {
    const on = (env: Envelope, channel: Channel): void => {
      got.push({ env, channel })
      if (got.length === n) {
        conn.off('message', on)
        resolve(got)
      }
    }
    conn.on('message', on)
  }), ms, `${n} messages (got ${got.length})`)
}

/** Send all, respecting backpressure. */
export async function sendAll (conn: Connection, envs: Envelope[]): Promise<void> {
  for (const env of envs) {
    if (!conn.send(env)) await conn.onDrain()
  }
}

export const PEER_FIXTURE = fileURLToPath(new URL('../fixtures/transport-peer.mjs', import.meta.url))

/** Start the echo peer in a child process; resolves with its bound URL and identity. */
export async function spawnPeer (listenUrl: string): Promise<{ child: ChildProcess, url: string, identity: string | undefined }> {
  const child = spawn(process.execPath, [PEER_FIXTURE, listenUrl], { stdio: ['ignore', 'pipe', 'inherit'] })
  child.on('error', () => {})
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const [line] = await withTimeout(once(rl, 'line') as Promise<[string]>, 15_000, 'peer child to listen')
  rl.close()
  const info = JSON.parse(line) as { url: string, identity?: string }
  return { child, url: info.url, identity: info.identity }
}

/** Count of OS handles of the kinds a transport may leak. */
export function netHandles (): number {
  return process.getActiveResourcesInfo().filter(r => /TCP|UDP|Pipe|TLS/i.test(r)).length
}

export async function eventually (check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (check()) return true
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return check()
}
