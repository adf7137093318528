import { EdgeFabricError } from '../errors.js'

export interface Command {
  summary: string
  usage: string
  run (argv: string[]): Promise<number>
}

const commands: Record<string, () => Promise<Command>> = {
  cloud: async () => (await import('./cloud.js')).cloudCommand,
  edge: async () => (await import('./edge.js')).edgeCommand,
  token: async () => (await import('./token.js')).tokenCommand,
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
    token: 'token create --node NAME: print a join token',
    status: 'show a running hub\'s nodes (admin API)',
    bench: 'bench lossy: transport benchmarks over an emulated lossy link'
  }
  for (const name of Object.keys(commands)) lines.push(`  ${name.padEnd(8)} ${about[name] ?? ''}`)
  lines.push('', 'Run `edgefabric <command> --help` for the options of a command.')
  return lines.join('\n')
}

export async function runCli (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
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
    throw err
  }
}
