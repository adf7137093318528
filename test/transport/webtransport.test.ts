import t from 'tap'
import { createServer } from 'node:net'
import { generateCertificateAuthority, generateSelfSignedCertificate } from '../../src/identity/tls.js'
import { webtransportStatus } from '../../src/transport/webtransport.js'
import { runCompliance } from './compliance.js'

// A port on 127.0.0.1 where nothing listens: bind one, release it.
async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

const status = await webtransportStatus()
t.comment(`WebTransport mode on this machine: ${status.mode}${status.reason !== undefined ? ` — ${status.reason}` : ''}`)

if (status.mode === 'unavailable') {
  t.pass(`skipped: WebTransport unavailable here: ${status.reason ?? ''}`)
} else {
  const dead = await freePort()
  runCompliance(t, {
    listenUrl: 'https://127.0.0.1:0/edgefabric',
    // A fresh 14-day P-256 certificate per listener, as the hub's dev mode makes them.
    listenOptions: async () => ({ identity: await generateSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] }) }),
    dialOptions: listener => ({ expectedRemoteIdentity: listener.identity as string }),
    wrongIdentity: 'ab'.repeat(32),
    // Join tokens pin the hub CA; an HTTP/3-only listener has no TCP port to read the chain from.
    ...(status.mode === 'http2' ? { caPinning: await generateCertificateAuthority({ commonName: 'webtransport test CA', days: 2 }) } : {}),
    deadUrl: `https://127.0.0.1:${dead}/edgefabric`,
    peerListenUrl: 'https://127.0.0.1:0/edgefabric',
    skip: status.mode === 'http2'
      ? { independentChannels: 'HTTP/2 fallback: all channels share one TCP connection (head-of-line blocking under loss); see webtransport-specific.test.ts for flow-control isolation of a paused channel' }
      : { caPinning: 'HTTP/3-only listener: no TCP port to read the certificate chain from, so only leaf pins work (src/transport/webtransport-pin.ts)' }
  })
}
