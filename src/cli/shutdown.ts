import { ConfigError } from '../errors.js'
import { checkTransportUrl, parseAdminAddress } from '../config/address.js'
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
        process.off('SIGINT', handler)
        process.off('SIGTERM', handler)
        resolve(0)
      }, (err: unknown) => {
        clearTimeout(timer)
        process.stderr.write(`edgefabric: error while shutting down: ${(err as Error).message}\n`)
        resolve(1)
      })
    }
    process.on('SIGINT', handler)
    process.on('SIGTERM', handler)
  })
}

/** Parse an admin address (`host:port` or `http://host:port`, src/config/address.ts); errors name the flag (exit code 2). */
export function parseHostPort (text: string, option: string): { host: string, port: number } {
  return parseAdminAddress(text, m => new ConfigError(option, option.replace(/^--/, ''), m))
}

/** Check every transport URL given to `flag`; errors name the flag (exit code 2). */
export function checkUrls (urls: readonly string[], flag: string, opts: { insecure: boolean, listen?: boolean }): void {
  for (const u of urls) checkTransportUrl(u, m => new ConfigError(flag, flag.replace(/^--/, ''), m), { insecure: opts.insecure, insecureFlag: '--insecure-transport', ...(opts.listen === true ? { listen: true } : {}) })
}
