/**
 * Pinning for WebTransport dials (see ./webtransport.ts for the modes).
 *
 * WebTransport's only pinning mechanism, W3C `serverCertificateHashes`,
 * accepts the hash of the LEAF certificate, valid for at most 14 days. Our
 * pins (`expectedRemoteIdentity`) are broader, as for `wss://`: the leaf, or
 * a CA that issued it — the join token pins the hub's CA (DESIGN.md §9), and
 * the leaf under it is reissued without new tokens. Pinning the CA hash
 * directly as a certificate hash can never match, which is why edges failed
 * with EF_HUB_IDENTITY_MISMATCH over https://.
 *
 * So before a pinned dial we read the chain the server presents (one TLS
 * handshake on TCP, nothing sent after it) and check it against the pin with
 * ./tls-pin.ts — the pinned CA must have SIGNED the leaf, a copy of the CA
 * appended to a foreign leaf is refused. The WebTransport session then pins
 * exactly that verified leaf hash, so it cannot land on another server.
 * Over HTTP/3-only listeners (UDP, no TCP to read the chain from) the pin is
 * used as a leaf hash as before: a leaf pin works, a CA pin fails with a
 * message saying why.
 */
import { isIP } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { DialError, IdentityMismatchError } from '../errors.js'
import { certificateFingerprint, WEBTRANSPORT_MAX_CERT_DAYS } from '../identity/tls.js'
import { peerChainDer, verifyPinnedChain } from './tls-pin.js'

/** What the server presented on TCP (diagnostics and chain pinning). */
export interface PeerCertificateInfo {
  /** sha256 of the leaf. */
  fingerprint: string
  notBefore: number
  notAfter: number
  /** Node's CA-store verdict (undefined: trusted by the system store). */
  authorizationError: string | undefined
  /** Presented certificates, leaf first (untrusted). */
  chain: Uint8Array[]
}

/**
 * Read the certificate chain the server presents on TCP (the HTTP/2 mode's
 * port). Nothing is sent after the TLS handshake and the socket is destroyed
 * at once, so accepting any certificate here exposes nothing; it never
 * carries a connection. Undefined when nothing answers TLS within `ms` or
 * `signal` aborts first.
 */
export function peekCertificate (host: string, port: number, ms: number, signal?: AbortSignal): Promise<PeerCertificateInfo | undefined> {
  return new Promise(resolve => {
    if (signal?.aborted === true) { resolve(undefined); return }
    const sock = tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], ...(isIP(host) === 0 ? { servername: host } : {}) })
    const done = (v: PeerCertificateInfo | undefined): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      sock.destroy()
      resolve(v)
    }
    // The dial gave up (deadline, abort): do not keep the socket until our own timer.
    const onAbort = (): void => done(undefined)
    signal?.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => done(undefined), ms)
    sock.on('error', () => done(undefined))
    sock.once('secureConnect', () => {
      try {
        // Before getPeerX509Certificate(): after it, Node 20's getPeerCertificate(true) comes back without `raw`.
        const chain = peerChainDer(sock)
        const c = sock.getPeerX509Certificate()
        if (c === undefined) { done(undefined); return }
        const authErr = sock.authorized ? undefined : String(sock.authorizationError ?? 'unverified')
        done({
          fingerprint: certificateFingerprint(c.raw),
          notBefore: Date.parse(c.validFrom),
          notAfter: Date.parse(c.validTo),
          authorizationError: authErr,
          chain
        })
      } catch {
        done(undefined)
      }
    })
  })
}

/** The leaf certificate hash to hand to `serverCertificateHashes` for pin `expected`. */
export interface ResolvedPin {
  /** Leaf hash to pin (= `expected` when the chain could not be read). */
  leaf: string
  /** The chain was read and verified against the pin. */
  verified: boolean
}

/**
 * Resolve pin `expected` (a leaf or an issuing CA) to the leaf hash the
 * WebTransport session must pin. Throws IdentityMismatchError when the server
 * presents a chain that does not satisfy the pin (checked before any
 * WebTransport byte — headers, tokens — is sent), DialError when it does but
 * the leaf can never pass WebTransport hash pinning (too long-lived).
 */
export function resolvePin (href: string, expected: string, peer: PeerCertificateInfo | undefined, now: number = Date.now()): ResolvedPin {
  if (peer === undefined) return { leaf: expected, verified: false }
  const pin = verifyPinnedChain(peer.chain, expected, now)
  if (!pin.ok) throw new IdentityMismatchError(expected, pin.leaf, pin.reason)
  const days = (peer.notAfter - peer.notBefore) / 86_400_000
  if (days > WEBTRANSPORT_MAX_CERT_DAYS) {
    const what = pin.via === 'leaf' ? 'matches the pinned fingerprint' : 'was issued by the pinned CA'
    throw new DialError(href, `the server certificate ${what} but is valid for ${days.toFixed(1)} days; ` +
      `WebTransport certificate-hash pinning accepts at most ${WEBTRANSPORT_MAX_CERT_DAYS} (serve a short-lived leaf for https://)`)
  }
  return { leaf: pin.leaf, verified: true }
}
