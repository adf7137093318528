/**
 * `edgefabric node list|remove`: the nodes bound at a hub (issue 12). Through
 * the running hub's admin API, or on the data dir of a stopped hub.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { defineConfig, loadConfig } from '../config/index.js'
import { ConfigError } from '../errors.js'
import type { FileBindingStore } from '../hub/bindings.js'
import { LmdbStore } from '../reliable/lmdb-store.js'
import { adminRequest, positional, resolveTarget, withStoppedHubBindings } from './admin-client.js'
import { configHelp } from '../config/index.js'
import type { Command } from './run.js'

const schema = defineConfig({
  dataDir: { type: 'string', default: './edgefabric-hub', env: 'EDGEFABRIC_DATA_DIR', description: 'the hub data directory' },
  admin: { type: 'string', env: 'EDGEFABRIC_ADMIN_URL', description: 'admin address of a running hub (host:port or http://host:port); default: the hub running on --data-dir, if any' },
  adminToken: { type: 'string', env: 'EDGEFABRIC_ADMIN_TOKEN', placeholder: 'token', description: 'the hub\'s admin token' },
  purge: { type: 'boolean', default: false, description: 'node remove: also delete the messages still queued for the node (default: kept, delivered if it joins again)' },
  json: { type: 'boolean', default: false, description: 'print JSON' }
})

const USAGE = `Usage: edgefabric node list|remove ...
  edgefabric node list [--json] [--data-dir DIR | --admin URL]
  edgefabric node remove NODE [--purge] [--data-dir DIR | --admin URL]

node remove deletes the node's key binding (and revokes the single-use token
it joined with) and cuts its live session; it can join again only with a new
token. Its queued messages are kept unless --purge.`

interface Row { nodeId: string, keyId: string, boundAt: number, status?: string, transport?: string, outbox?: number }

async function offline<T> (dataDir: string, fn: (store: FileBindingStore) => Promise<T>): Promise<T> {
  if (!existsSync(join(dataDir, 'identity'))) throw new ConfigError('--data-dir', 'dataDir', `${dataDir} holds no hub identity; check the path`)
  return await withStoppedHubBindings(dataDir, fn)
}

export const nodeCommand: Command = {
  summary: 'Nodes bound at the hub: node list | node remove NODE [--purge]',
  usage: `${USAGE}\n\n${configHelp(schema, { usage: 'Options:' })}`,
  async run (argv) {
    const [sub, ...rest] = argv
    if (sub === 'list') {
      const cfg = loadConfig(schema, { argv: rest, env: process.env })
      const target = await resolveTarget(cfg)
      const nodes: Row[] = target.kind === 'api'
        ? (await adminRequest(target, 'GET', '/v1/admin/nodes')).nodes
        : await offline(target.dataDir, async s => (await s.list()).map(b => ({ nodeId: b.nodeId, keyId: b.keyId, boundAt: b.boundAt, status: 'hub stopped' })))
      if (cfg.json) { process.stdout.write(JSON.stringify(nodes) + '\n'); return 0 }
      process.stdout.write(`${'NODE'.padEnd(24)} ${'STATUS'.padEnd(13)} ${'KEY'.padEnd(23)} ${'BOUND'.padEnd(21)} OUTBOX\n`)
      for (const n of nodes) {
        process.stdout.write(`${n.nodeId.padEnd(24)} ${(n.status ?? '-').padEnd(13)} ${n.keyId.padEnd(23)} ${new Date(n.boundAt).toISOString().replace(/\.\d+Z$/, 'Z').padEnd(21)} ${n.outbox ?? '-'}\n`)
      }
      return 0
    }
    if (sub === 'remove') {
      const [node, more] = positional(rest)
      if (node === undefined) throw new ConfigError('node remove', 'node', 'expected the node name, e.g. "edgefabric node remove edge-1"')
      const cfg = loadConfig(schema, { argv: more, env: process.env })
      const target = await resolveTarget(cfg)
      let result: { removed: boolean, purged: number }
      if (target.kind === 'api') {
        result = await adminRequest(target, 'DELETE', `/v1/admin/nodes/${encodeURIComponent(node)}${cfg.purge ? '?purge=1' : ''}`)
      } else {
        result = await offline(target.dataDir, async s => {
          const removed = await s.remove(node, Date.now())
          let purged = 0
          if (removed && cfg.purge) {
            const store = await LmdbStore.open(join(target.dataDir, 'reliable'), { durability: 'sync' })
            try {
              const st = store.outboxStats(node)
              if (st.count > 0) purged = await store.ack(node, st.lastSeq)
            } finally { await store.close() }
          }
          return { removed, purged }
        })
        if (!result.removed) throw new ConfigError('node remove', 'node', `node ${node} is not bound at the hub in ${target.dataDir}`)
      }
      process.stdout.write(`removed ${node}${cfg.purge ? ` (${result.purged} queued messages purged)` : ''}\n`)
      return 0
    }
    process.stderr.write(`edgefabric node: unknown sub-command ${sub === undefined ? '(none)' : `"${sub}"`}\n\n${USAGE}\n`)
    return 2
  }
}
