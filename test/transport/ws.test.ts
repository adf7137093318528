/**
 * ws:// and wss:// against the shared transport compliance suite.
 */
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { runCompliance } from './compliance.js'
import { testPki } from './ws-test-certs.js'

/** A port nothing listens on: bind port 0, note it, close. */
async function deadPort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>(resolve => srv.close(() => resolve()))
  return port
}

const dist = (p: string): boolean => existsSync(fileURLToPath(new URL(`../../dist/${p}`, import.meta.url)))
const port = await deadPort()
const pki = await testPki()
const headOfLine = 'ws:// is one TCP stream: channels share it (head-of-line blocking); use quic:// for independent channels'

t.test('ws://', async t => {
  runCompliance(t, {
    listenUrl: 'ws://127.0.0.1:0',
    deadUrl: `ws://127.0.0.1:${port}`,
    ...(dist('transport/ws.js') ? { peerListenUrl: 'ws://127.0.0.1:0' } : {}),
    skip: {
      identity: 'plain ws:// does not authenticate the peer (remoteIdentity is undefined)',
      independentChannels: headOfLine,
      ...(dist('transport/ws.js') ? {} : { peerKill: 'dist/ not built (npm run build)' })
    }
  })
})

t.test('wss://', async t => {
  const peerReady = dist('transport/ws.js') && dist('identity/tls.js')
  runCompliance(t, {
    listenUrl: 'wss://127.0.0.1:0',
    listenOptions: () => ({ identity: { cert: pki.chain, key: pki.leafKey } }),
    dialOptions: listener => ({ expectedRemoteIdentity: listener.identity as string }),
    wrongIdentity: pki.otherFingerprint,
    caPinning: { cert: pki.caCert, key: pki.caKey },
    deadUrl: `wss://127.0.0.1:${port}`,
    ...(peerReady ? { peerListenUrl: 'wss://127.0.0.1:0' } : {}),
    skip: {
      independentChannels: headOfLine,
      ...(peerReady ? {} : { peerKill: 'dist/ not built (npm run build)' })
    }
  })
})
