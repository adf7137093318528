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

/** Parse `host:port` for admin addresses. */
export function parseHostPort (text: string, option: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text)
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw new Error(`${option}: expected host:port, got "${text}"`)
  return { host: (m[1] ?? m[2]) as string, port }
}
