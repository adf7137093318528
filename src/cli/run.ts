import { EdgeFabricError } from '../errors.js'
// Loaded first, for its start-up read of the parent pid (parent-death shutdown).
import './shutdown.js'

export interface Command {
  summary: string
  usage: string
  run (argv: string[]): Promise<number>
}

const commands: Record<string, () => Promise<Command>> = {
  cloud: async () => (await import('./cloud.js')).cloudCommand,
  edge: async () => (await import('./edge.js')).edgeCommand,
  token: async () => (await import('./token.js')).tokenCommand,
  node: async () => (await import('./node.js')).nodeCommand,
  send: async () => (await import('./messages.js')).sendCommand,
  request: async () => (await import('./messages.js')).requestCommand,
  broadcast: async () => (await import('./messages.js')).broadcastCommand,
  sub: async () => (await import('./messages.js')).subCommand,
  status: async () => (await import('./status.js')).statusCommand,
  demo: async () => (await import('./demo.js')).demoCommand,
  bench: async () => (await import('./bench.js')).benchCommand
}

function mainHelp (): string {
  const lines = ['Usage: edgefabric <command> [options]', '', 'Commands:']
  const about: Record<string, string> = {
    demo: 'run a hub, two edges and a simulated device on loopback',
    cloud: 'run the cloud hub',
    edge: 'run an edge node',
    token: 'join tokens: token create --node NAME | list | revoke JTI (first join only)',
    node: 'nodes bound at the hub: node list | node remove NODE [--purge]',
    send: 'send NODE --resource R --json ...: send a message to a node (admin API)',
    request: 'request NODE --resource R: send a request and print the answer',
    broadcast: 'broadcast --label k=v --resource R: send to every matching node',
    sub: 'sub [--node N] [--resource PREFIX]: print what edges send up (JSON lines)',
    status: 'show a running hub\'s nodes (admin API)',
    bench: 'bench lossy: transport benchmarks over an emulated lossy link'
  }
  for (const name of Object.keys(commands)) lines.push(`  ${name.padEnd(10)} ${about[name] ?? ''}`)
  lines.push('', 'Run `edgefabric <command> --help` for the options of a command; `edgefabric --version` for the version.')
  return lines.join('\n')
}

async function version (): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

export async function runCli (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (argv.includes('--version') || argv.includes('-V')) {
    process.stdout.write(`edgefabric ${await version()}\n`)
    return 0
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp() + '\n')
    return name === undefined ? 1 : 0
  }
  const load = commands[name]
  if (load === undefined) {
    process.stderr.write(`edgefabric: unknown command "${name}"\n\n${mainHelp()}\n`)
    return 2
  }
  const cmd = await load()
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.summary}\n\n${cmd.usage}\n`)
    return 0
  }
  try {
    return await cmd.run(rest)
  } catch (err) {
    if (err instanceof EdgeFabricError && err.code === 'EF_HELP_REQUESTED') {
      process.stdout.write(`${(err as EdgeFabricError & { helpText: string }).helpText}\n`)
      return 0
    }
    if (err instanceof EdgeFabricError) {
      process.stderr.write(`edgefabric ${name}: ${err.message} [${err.code}]\n`)
      return err.code === 'EF_CONFIG' || err.code === 'EF_INVALID_OPTION' ? 2 : 1
    }
    // Anything else is one line too (issue 12: never a stack trace for an
    // operator); EDGEFABRIC_DEBUG=1 shows the stack for bug reports.
    const e = err as Error
    process.stderr.write(`edgefabric ${name}: ${e?.message ?? String(err)}${(e as { code?: string })?.code !== undefined ? ` [${(e as { code?: string }).code}]` : ''}\n`)
    if (process.env.EDGEFABRIC_DEBUG !== undefined && process.env.EDGEFABRIC_DEBUG !== '') process.stderr.write(`${e?.stack ?? ''}\n`)
    return 1
  }
}
