/**
 * Test certificates for wss://: a CA and a leaf for 127.0.0.1/localhost
 * signed by it, plus an unrelated self-signed certificate. Made with the
 * openssl CLI (EC P-256, quick) in a temp dir, once per process.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestPki {
  caCert: string
  caKey: string
  /** Leaf certificate followed by the CA certificate (what the server presents). */
  chain: string
  leafCert: string
  leafKey: string
  /** An unrelated self-signed certificate + key. */
  otherCert: string
  otherKey: string
}

let cached: TestPki | undefined

export function testPki (): TestPki {
  if (cached !== undefined) return cached
  const dir = mkdtempSync(join(tmpdir(), 'ef-ws-pki-'))
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
  const f = (name: string): string => join(dir, name)
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=edgefabric test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    ssl('req', ...ec, '-keyout', f('leaf.key'), '-out', f('leaf.csr'), '-subj', '/CN=localhost')
    writeFileSync(f('leaf.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n')
    ssl('x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f('leaf.crt'), '-days', '2', '-extfile', f('leaf.ext'))
    ssl('req', '-x509', ...ec, '-keyout', f('other.key'), '-out', f('other.crt'), '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1')
    const r = (name: string): string => readFileSync(f(name), 'utf8')
    cached = {
      caCert: r('ca.crt'),
      caKey: r('ca.key'),
      leafCert: r('leaf.crt'),
      leafKey: r('leaf.key'),
      chain: r('leaf.crt') + r('ca.crt'),
      otherCert: r('other.crt'),
      otherKey: r('other.key')
    }
    return cached
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
