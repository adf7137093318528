/**
 * WebTransport transport (DESIGN.md §3): `https://host:port/path`, with
 * `webtransport://` accepted as an alias, on @fails-components/webtransport.
 *
 * Modes (`webtransportStatus()` says which runs here and why):
 * - `http3` — WebTransport over HTTP/3 (QUIC, UDP): needs the optional native
 *   package @fails-components/webtransport-transport-http3-quiche, whose
 *   install downloads a prebuilt binary from GitHub. Independent streams: no
 *   head-of-line blocking across channels.
 * - `http2` — the library's experimental WebTransport-over-HTTP/2 fallback
 *   (TCP, pure JS). Used automatically when the binding is absent. All
 *   channels share one TCP connection, so `headOfLineBlocking` is true; the
 *   per-stream WebTransport flow control still keeps a paused channel from
 *   starving the others.
 * - `unavailable` — the library itself cannot be loaded.
 * The URL may pin a mode: `?mode=auto` (default), `?mode=http3` (fail with
 * TransportUnavailableError naming the reason when HTTP/3 cannot run) or
 * `?mode=http2`. The parameter is ours and is not sent to the server.
 *
 * Identity: the listener's certificate fingerprint (sha256 of DER, hex) is
 * `Listener.identity`; a dialer pins it, or a CA that issued it (join tokens
 * pin the hub CA), with `expectedRemoteIdentity`. WebTransport itself
 * (`serverCertificateHashes`, W3C rules) pins only a LEAF valid for at most
 * 14 days, so a dial first reads and verifies the presented chain and then
 * pins the verified leaf (./webtransport-pin.ts). Connections report the
 * leaf as `remoteIdentity`, like wss://.
 * Without `expectedRemoteIdentity` the library validates against Node's CA
 * store and the host name. There is no path that skips verification.
 * Client certificates do not exist in WebTransport: an inbound connection's
 * `remoteIdentity` is undefined; authenticate in the session handshake.
 */
import { TransportUnavailableError } from '../errors.js'
import type { ListenOptions, Listener, Transport } from './types.js'
import { chooseMode, dialWebTransport, parseTarget } from './webtransport-dial.js'
import { loadWebTransport } from './webtransport-lib.js'
import { WebTransportListener } from './webtransport-listener.js'

export { webtransportMode, webtransportStatus, type WebTransportMode, type WebTransportStatus } from './webtransport-lib.js'
export { WebTransportConnection } from './webtransport-connection.js'
export { WebTransportListener } from './webtransport-listener.js'

async function listenWebTransport (url: URL, options: ListenOptions): Promise<Listener> {
  const target = parseTarget(url)
  const { lib, status } = await loadWebTransport()
  const choice = chooseMode(target.mode, status)
  if (lib === undefined) throw new TransportUnavailableError('webtransport', status.reason ?? 'library unavailable')
  const listener = new WebTransportListener(lib, choice === 'http2' ? 'http2' : 'http3', target, options)
  await listener.start()
  return listener
}

export const webtransportTransport: Transport = {
  name: 'webtransport',
  schemes: ['https', 'webtransport'],
  async probe () {
    const { status } = await loadWebTransport()
    if (status.mode === 'unavailable') throw new TransportUnavailableError('webtransport', status.reason ?? 'library unavailable')
  },
  dial: dialWebTransport,
  listen: listenWebTransport
}
