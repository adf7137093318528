/**
 * Echo server of the transport loopback benchmark, run as a child process by
 * bench/transport-loopback.ts so client and server each get their own event
 * loop (and, on a 2-core machine, their own core).
 *
 *   node dist-bench/bench/loopback-server.js <listenUrl>
 *
 * Prints one JSON line `{"url","identity","mode"?}` once listening (or
 * `{"error","code"}` and exits 2 when the transport cannot listen). Exits when
 * stdin closes, so a crashed or killed parent never leaves it running, and on
 * SIGTERM after closing the listener.
 */
import { toError } from '../src/errors.js'
import { startLoopbackServer } from './lib/loopback-protocol.js'

const url = process.argv[2]
if (url === undefined) {
  process.stderr.write('usage: loopback-server <listenUrl>\n')
  process.exit(64)
}

try {
  const { info, listener } = await startLoopbackServer(url)
  process.stdout.write(JSON.stringify(info) + '\n')
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    const force = setTimeout(() => process.exit(0), 2000)
    force.unref()
    listener.close(500).then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGTERM', stop)
  process.stdin.on('end', stop)
  process.stdin.on('error', stop)
  process.stdin.resume()
} catch (err) {
  const e = toError(err)
  const { code, reason } = e as { code?: unknown, reason?: unknown }
  process.stdout.write(JSON.stringify({ error: e.message, code, reason }) + '\n')
  process.exit(2)
}
