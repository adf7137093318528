/**
 * `edgefabric token create --node NAME`: print a join token for a node. Reads
 * (and on first use creates) the hub identity in the hub's data directory, so
 * it works whether or not the hub is running.
 */
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import { loadOrCreateHubIdentity } from '../hub/identity.js'
import { createJoinToken } from '../identity/token.js'
import type { Command } from './run.js'

export const tokenSchema = defineConfig({
  node: { type: 'string', required: true, env: 'EDGEFABRIC_NODE', description: 'node name the token admits' },
  dataDir: { type: 'string', default: './edgefabric-hub', env: 'EDGEFABRIC_DATA_DIR', description: 'the hub data directory' },
  ttl: { type: 'duration', default: '24h', min: '1s', max: '8760h', description: 'how long the token stays valid' }
})

export const tokenCommand: Command = {
  summary: 'Create a join token for an edge node: edgefabric token create --node NAME',
  usage: configHelp(tokenSchema, { usage: 'Usage: edgefabric token create --node NAME [options]' }),
  async run (argv) {
    const [sub, ...rest] = argv
    if (sub !== 'create') {
      process.stderr.write(`edgefabric token: unknown sub-command ${sub === undefined ? '(none)' : `"${sub}"`}; use "token create --node NAME"\n`)
      return 2
    }
    const cfg = loadConfig(tokenSchema, { argv: rest, env: process.env })
    const identity = await loadOrCreateHubIdentity(cfg.dataDir)
    process.stdout.write(createJoinToken(identity, { nodeId: cfg.node, ttlSeconds: Math.ceil(cfg.ttl / 1000) }) + '\n')
    return 0
  }
}
