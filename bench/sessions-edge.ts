/**
 * Child process of bench/sessions.ts: many simulated edge nodes in one
 * process. A full EdgeNode per session would bring a module bus, metrics and
 * an admin server each; a simulated node is only what the wire sees: its own
 * Ed25519 node key and join token, and the real EdgeConnector
 * (src/edge/connector.ts), which dials with the hub identity pinned, answers
 * the challenge, keeps the session alive with the real liveness pings and
 * reconnects with the real backoff. Like a real edge's reliable lane, it
 * states its resume point after each welcome (and otherwise ignores the
 * hub's lane messages: idle nodes have nothing queued).
 *
 * Dials are windowed (`window` in flight per process) so the connect rate is
 * the hub's throughput, not a measure of how many handshakes time out when
 * thousands are started in the same millisecond.
 */
import { generateKeyPairSync } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { systemClock } from '../src/util/clock.js'
import { EdgeConnector } from '../src/edge/connector.js'
import { rawPublicKey, signChallenge } from '../src/identity/node-key.js'
import { edgeJoinSecret, tokenPayloadPart } from '../src/identity/join-proof.js'
import { nullLogger } from '../src/ops/logger.js'
import { reliableMessage } from '../src/reliable/protocol.js'
import { Backoff } from '../src/session/liveness.js'
import { registerTransport, transportFor, type Transport } from '../src/transport/index.js'
import { serveParent } from './lib/child-ipc.js'
import { applyTuning, percentile, procStats, type ConnectResult, type EdgeInit, type EdgeStats, type ParentRequest } from './lib/sessions-ipc.js'

interface SimNode {
  id: string
  token: string
  privateKey: KeyObject
  publicKeyRaw: Uint8Array
  connector: EdgeConnector | undefined
  /** Connection stats of sessions already closed, so byte totals survive reconnects. */
  closedBytesSent: number
  closedBytesReceived: number
  closedMessagesSent: number
  closedMessagesReceived: number
}

let init: EdgeInit | undefined
const nodes: SimNode[] = []
let drops = 0

let dials = 0
/** Why dials failed (message with digits masked → count), to tell a refusal from a timeout. */
const dialErrors = new Map<string, number>()

/** Wrap the transport of the hub URL's scheme so every dial attempt is counted. */
async function countDials (url: string): Promise<void> {
  const real = await transportFor(url)
  const scheme = new URL(url).protocol.replace(/:$/, '')
  const counted: Transport = {
    name: real.name,
    schemes: [scheme],
    probe: async () => await real.probe(),
    listen: async (u, o) => await real.listen(u, o),
    dial: async (u, o) => {
      dials++
      try {
        return await real.dial(u, o)
      } catch (err) {
        const key = (err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err)).replace(/[0-9]+/g, 'N').slice(0, 120)
        if (dialErrors.size < 32 || dialErrors.has(key)) dialErrors.set(key, (dialErrors.get(key) ?? 0) + 1)
        throw err
      }
    }
  }
  registerTransport(counted)
}

async function setup (i: EdgeInit): Promise<number> {
  init = i
  applyTuning(i.tuning)
  await countDials(i.url)
  for (const n of i.nodes) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    nodes.push({
      id: n.id,
      token: n.token,
      privateKey,
      publicKeyRaw: rawPublicKey(publicKey),
      connector: undefined,
      closedBytesSent: 0,
      closedBytesReceived: 0,
      closedMessagesSent: 0,
      closedMessagesReceived: 0
    })
  }
  return nodes.length
}

function newConnector (n: SimNode, i: EdgeInit): EdgeConnector {
  return new EdgeConnector({
    hubUrls: [i.url],
    nodeId: n.id,
    // First join proves the token (protocol 2); later reconnects of the bench's sessions are bound already.
    join: { payload: tokenPayloadPart(n.token), secret: edgeJoinSecret(n.token) },
    joined: false,
    key: { publicKey: n.publicKeyRaw, sign: (nonce, ctx) => signChallenge({ privateKey: n.privateKey }, nonce, ctx) },
    pins: i.pins,
    clock: systemClock,
    logger: nullLogger,
    handshakeTimeoutMs: 20_000,
    dialTimeoutMs: 20_000,
    backoff: new Backoff(500, 30_000),
    connection: {}
  })
}

async function connectAll (): Promise<ConnectResult> {
  const i = init
  if (i === undefined) throw new Error('not initialised')
  const latencies: number[] = []
  let next = 0
  let inFlight = 0
  let connected = 0
  let failed = 0
  let retries = 0
  let lastError: string | undefined
  let lastWelcomeAt = 0
  const dialsBefore = dials
  const firstDialAt = Date.now()
  await new Promise<void>(resolve => {
    const deadline = setTimeout(resolve, i.deadlineMs)
    const done = (): void => {
      if (connected + failed === nodes.length) { clearTimeout(deadline); resolve() }
    }
    const startNext = (): void => {
      while (inFlight < i.window && next < nodes.length) {
        const n = nodes[next++] as SimNode
        inFlight++
        const c = newConnector(n, i)
        n.connector = c
        const t0 = performance.now()
        let welcomed = false
        c.on('connected', ({ connection }) => {
          if (welcomed) return // a reconnect after a drop: already counted
          welcomed = true
          latencies.push(performance.now() - t0)
          connected++
          inFlight--
          lastWelcomeAt = Date.now()
          // What a real EdgeNode's reliable lane sends on every (re)connect: its resume point.
          try { connection.send(reliableMessage('resume', { r: 0 }, n.id), { channel: 'control' }) } catch { /* closed meanwhile */ }
          connection.once('close', () => {
            const st = connection.stats
            n.closedBytesSent += st.bytesSent
            n.closedBytesReceived += st.bytesReceived
            n.closedMessagesSent += st.messagesSent
            n.closedMessagesReceived += st.messagesReceived
          })
          startNext()
          done()
        })
        c.on('disconnected', () => {
          if (welcomed && c.state !== 'stopped') drops++
        })
        c.on('failed', err => {
          lastError = err.message
          failed++
          inFlight--
          startNext()
          done()
        })
        c.start()
      }
    }
    startNext()
  })
  // Every attempt dials once (see countDials); the ones beyond one per welcomed node were retries.
  retries = dials - dialsBefore - connected
  for (const n of nodes) {
    const e = n.connector?.state === 'connected' ? undefined : n.connector?.lastError
    if (e !== undefined) { lastError ??= e.message; break }
  }
  latencies.sort((a, b) => a - b)
  const result: ConnectResult = {
    firstDialAt,
    lastWelcomeAt,
    connected,
    retries,
    failed,
    missing: nodes.length - connected - failed,
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: latencies[latencies.length - 1] ?? 0 }
  }
  if (lastError !== undefined) result.lastError = lastError
  if (dialErrors.size > 0) result.dialErrors = Object.fromEntries(dialErrors)
  dialErrors.clear()
  return result
}

async function disconnectAll (): Promise<number> {
  // Bounded parallelism: thousands of simultaneous goodbyes would only measure queueing.
  let idx = 0
  let closed = 0
  const worker = async (): Promise<void> => {
    while (idx < nodes.length) {
      const n = nodes[idx++] as SimNode
      const c = n.connector
      n.connector = undefined
      if (c === undefined) continue
      await c.close().catch(() => {})
      closed++
    }
  }
  await Promise.all(Array.from({ length: 64 }, worker))
  return closed
}

function stats (): EdgeStats {
  let connected = 0
  let bytesSent = 0
  let bytesReceived = 0
  let messagesSent = 0
  let messagesReceived = 0
  for (const n of nodes) {
    bytesSent += n.closedBytesSent
    bytesReceived += n.closedBytesReceived
    messagesSent += n.closedMessagesSent
    messagesReceived += n.closedMessagesReceived
    const conn = n.connector?.connection
    if (conn === undefined) continue
    connected++
    const st = conn.stats
    bytesSent += st.bytesSent
    bytesReceived += st.bytesReceived
    messagesSent += st.messagesSent
    messagesReceived += st.messagesReceived
  }
  return { ...procStats(), connected, bytesSent, bytesReceived, messagesSent, messagesReceived, drops }
}

serveParent<ParentRequest>(async req => {
  switch (req.cmd) {
    case 'init': return await setup(req.init)
    case 'connect': return await connectAll()
    case 'disconnect': return await disconnectAll()
    case 'stats': return stats()
    default:
      throw new Error(`unknown command ${(req as { cmd: string }).cmd}`)
  }
}, async () => { await disconnectAll() })
