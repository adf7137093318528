/**
 * Validation of the edge's hub URLs at start (issue 12/13): a URL the edge
 * can never use fails here with one message naming the option, instead of a
 * retry loop. Plain ws:// needs `insecureTransport` unless it is loopback.
 */
import { checkTransportUrl, isLoopbackName } from '../config/address.js'
import { InvalidOptionError } from '../errors.js'

/** Throws InvalidOptionError('hub'); 'insecure-loopback' = allowed plain ws:// on loopback (warn). */
export function checkHubUrl (url: string, insecureTransport: boolean): 'ok' | 'insecure' | 'insecure-loopback' {
  const u = checkTransportUrl(url, m => new InvalidOptionError('hub', m), { insecure: insecureTransport, insecureFlag: 'insecureTransport: true (CLI: --insecure-transport)' })
  if (u.protocol !== 'ws:') return 'ok'
  return isLoopbackName(u.hostname) ? 'insecure-loopback' : 'insecure'
}
