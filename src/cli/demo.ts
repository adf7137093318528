/**
 * `edgefabric demo`: the embedded default. Until the hub/edge runtime lands this
 * runs the transport layer alone: a listener on loopback per available
 * transport, one dialer per transport, envelopes flowing both ways, and a
 * summary of round-trip times.
 */
import { parseArgs } from 'node:util'
import { newMessage, newResponse, type Envelope } from '../envelope.js'
import { isEdgeFabricError } from '../errors.js'
import { dial, listen } from '../transport/index.js'
import type { Command } from './run.js'

const URLS = ['memory://demo-hub', 'ws://127.0.0.1:0', 'quic://127.0.0.1:0']

export const demoCommand: Command = {
  summary: 'Run a cloud and edges on loopback and show messages flowing.',
  usage: 'Usage: edgefabric demo [--count N]\n\n  --count N   round trips per transport (default 200)',
  async run (argv) {
    const { values } = parseArgs({ args: argv, options: { count: { type: 'string', default: '200' } } })
    const count = Number(values.count)
    if (!Number.isInteger(count) || count < 1) {
      process.stderr.write('edgefabric demo: --count must be a positive integer\n')
      return 2
    }
    for (const url of URLS) {
      const scheme = url.slice(0, url.indexOf(':'))
      let listener
      try {
        listener = await listen(url, {
          onConnection (conn) {
            conn.on('message', (env: Envelope) => {
              try { conn.send(newResponse(env, { echoed: true }, 'hub')) } catch { /* closing */ }
            })
          }
        })
      } catch (err) {
        if (isEdgeFabricError(err, 'EF_TRANSPORT_UNAVAILABLE')) {
          process.stdout.write(`${scheme.padEnd(8)} unavailable: ${err.message}\n`)
          continue
        }
        throw err
      }
      const conn = await dial(listener.url, listener.identity !== undefined ? { expectedRemoteIdentity: listener.identity } : {})
      const rtts: number[] = []
      for (let i = 0; i < count; i++) {
        const req = newMessage({ source: 'edge-1/demo', group: 'demo', operation: 'query', resource: `default/sensor/s${i % 8}`, content: { i } })
        const started = process.hrtime.bigint()
        const reply = new Promise<void>(resolve => conn.once('message', () => resolve()))
        conn.send(req)
        await reply
        rtts.push(Number(process.hrtime.bigint() - started) / 1e6)
      }
      rtts.sort((a, b) => a - b)
      const p = (q: number): string => (rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))] ?? 0).toFixed(3)
      process.stdout.write(`${scheme.padEnd(8)} ${listener.url.padEnd(28)} ${count} round trips  p50 ${p(0.5)} ms  p99 ${p(0.99)} ms\n`)
      await conn.close('demo done')
      await listener.close()
    }
    return 0
  }
}
