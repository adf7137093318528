import { EdgeFabricError } from '../errors.js'

export interface Command {
  summary: string
  usage: string
  run (argv: string[]): Promise<number>
}

const commands: Record<string, () => Promise<Command>> = {
  demo: async () => (await import('./demo.js')).demoCommand
}

function mainHelp (): string {
  const lines = ['Usage: edgefabric <command> [options]', '', 'Commands:']
  for (const name of Object.keys(commands)) lines.push(`  ${name}`)
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
    if (err instanceof EdgeFabricError) {
      process.stderr.write(`edgefabric ${name}: ${err.message} [${err.code}]\n`)
      return 1
    }
    throw err
  }
}
