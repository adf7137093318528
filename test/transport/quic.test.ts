/**
 * quic:// against the shared transport compliance suite.
 */
import { createSocket } from 'node:dgram'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { registerTransport } from '../../src/transport/index.js'
import { createQuicTransport, generateQuicIdentity, quicPeerId } from '../../src/transport/quic.js'
import { runCompliance } from './compliance.js'

/** A UDP port nothing listens on: bind port 0, note it, close. */
async function deadUdpPort (): Promise<number> {
  const sock = createSocket('udp4')
  await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', resolve))
  const port = sock.address().port
  await new Promise<void>(resolve => sock.close(() => resolve()))
  return port
}

// A short idle timeout in this process, so a SIGKILLed peer is noticed within
// the suite's deadline (QUIC uses the smaller of both sides' idle timeouts).
registerTransport(createQuicTransport({ maxIdleTimeoutMs: 3000, keepAliveIntervalMs: 1000 }))

const peerReady = existsSync(fileURLToPath(new URL('../../dist/transport/quic.js', import.meta.url)))
const port = await deadUdpPort()
const other = quicPeerId(await generateQuicIdentity())

runCompliance(t, {
  listenUrl: 'quic://127.0.0.1:0',
  listenOptions: async () => ({ identity: await generateQuicIdentity() }),
  dialOptions: listener => ({ expectedRemoteIdentity: listener.identity as string }),
  wrongIdentity: other,
  deadUrl: `quic://127.0.0.1:${port}`,
  peerKillDetectMs: 6000,
  ...(peerReady ? { peerListenUrl: 'quic://127.0.0.1:0' } : {}),
  skip: {
    ...(peerReady ? {} : { peerKill: 'dist/ not built (npm run build)' })
  }
})
