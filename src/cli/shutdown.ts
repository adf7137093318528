import { ConfigError } from '../errors.js'
import { checkTransportUrl, isLoopbackName, parseAdminAddress } from '../config/address.js'
/**
 * SIGINT/SIGTERM handling for long-running commands: the first signal closes
 * gracefully within a deadline; a second signal, or the deadline passing,
 * exits at once. Resolves with the exit code to use.
 */
export function onShutdown (close: () => Promise<void>, deadlineMs = 10_000): Promise<number> {
  return new Promise(resolve => {
    let closing = false
    const handler = (signal: NodeJS.Signals): void => {
      if (closing) {
        process.stderr.write(`edgefabric: ${signal} again, exiting now\n`)
        process.exit(130)
      }
      closing = true
      const timer = setTimeout(() => {
        process.stderr.write(`edgefabric: graceful shutdown exceeded ${deadlineMs} ms, exiting\n`)
        process.exit(1)
      }, deadlineMs)
      timer.unref()
      close().then(() => {
        clearTimeout(timer)
        process.exitCode ??= 0
        process.off('SIGINT', handler)
        process.off('SIGTERM', handler)
        // After a clean close the process should end by itself. If a handle leaked
        // (a socket, a timer), an operator's service manager would see a hung stop
        // and a parent-death shutdown would leave an orphan: name what holds the
        // process and exit anyway. Unref'd, so a normal exit is not delayed.
        const backstop = setTimeout(() => {
          process.stderr.write(`edgefabric: still running ${EXIT_BACKSTOP_MS} ms after a clean shutdown, held by: ${process.getActiveResourcesInfo().join(', ') || 'nothing visible'}; exiting\n`)
          process.exit(process.exitCode ?? 0)
        }, EXIT_BACKSTOP_MS)
        backstop.unref()
        resolve(0)
      }, (err: unknown) => {
        clearTimeout(timer)
        process.stderr.write(`edgefabric: error while shutting down: ${(err as Error).message}\n`)
        resolve(1)
      })
    }
    process.on('SIGINT', handler)
    process.on('SIGTERM', handler)
    // Parent death (issue 12): `npx edgefabric cloud` then SIGTERM to npx
    // left the hub running with its ports. When our parent goes away we are
    // re-parented (ppid changes): shut down as for SIGTERM. The parent is the one
    // the process STARTED with: read here, after a slow start (Hub.start at load 10
    // took seconds), a parent that died meanwhile was never noticed — ppid was
    // already 1 (test/day2/fail-fast.test.ts, "the orphaned hub is still running").
    const parent = STARTUP_PARENT
    const watch = setInterval(() => {
      if (process.ppid !== parent && !closing) {
        process.stderr.write(`edgefabric: parent process ${parent} is gone, shutting down\n`)
        clearInterval(watch)
        handler('SIGTERM')
      }
    }, PARENT_POLL_MS)
    watch.unref()
  })
}

/** The parent process at start-up (this module is loaded by the CLI's entry, run.ts, before any command starts). */
const STARTUP_PARENT = process.ppid

/** How long a cleanly closed command may take to end by itself before it exits anyway. */
const EXIT_BACKSTOP_MS = 3000

/** How often a long-running command checks that its parent is still alive. */
const PARENT_POLL_MS = 500

/** Parse an admin address (`host:port` or `http://host:port`, src/config/address.ts); errors name the flag (exit code 2). */
export function parseHostPort (text: string, option: string): { host: string, port: number } {
  return parseAdminAddress(text, m => new ConfigError(option, option.replace(/^--/, ''), m))
}

/** Check every transport URL given to `flag`; errors name the flag (exit code 2). */
export function checkUrls (urls: readonly string[], flag: string, opts: { insecure: boolean, listen?: boolean }): void {
  for (const u of urls) checkTransportUrl(u, m => new ConfigError(flag, flag.replace(/^--/, ''), m), { insecure: opts.insecure, insecureFlag: '--insecure-transport', ...(opts.listen === true ? { listen: true } : {}) })
}

/** Refuse a non-loopback admin listener without a token (issue 12: safe defaults). */
export function checkAdminExposure (admin: { host: string } | false, hasToken: boolean, flag: string): void {
  if (admin === false || hasToken || isLoopbackName(admin.host)) return
  throw new ConfigError(flag, flag.replace(/^--/, ''), `${admin.host} is not a loopback address and this admin server has no token: anyone who can reach it could ${hasToken ? '' : 'read status and metrics and '}use its API. Bind it to 127.0.0.1, or set an admin token (--admin-token or EDGEFABRIC_ADMIN_TOKEN)`)
}

/** The default admin port if free, else 0 (any): two edges on one host must not collide (issue 12). */
export async function freeOrAny (host: string, port: number): Promise<number> {
  const { createServer } = await import('node:net')
  return await new Promise(resolve => {
    const s = createServer()
    s.once('error', () => resolve(0))
    s.listen(port, host, () => s.close(() => resolve(port)))
  })
}
