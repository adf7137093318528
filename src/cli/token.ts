/**
 * `edgefabric token create|list|revoke`: join tokens (issue 12).
 *
 * A token is for the FIRST join of a node only: it binds the node's key at
 * the hub, and is single use unless created `--reusable`. Against a running
 * hub the verbs go through its admin API (found through the data dir's lock,
 * or `--admin`); on a stopped hub they act on the data dir.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import { ConfigError } from '../errors.js'
import type { FileBindingStore } from '../hub/bindings.js'
import { loadOrCreateHubIdentity } from '../hub/identity.js'
import { createJoinToken, decodeJoinToken } from '../identity/token.js'
import { readLock } from '../util/data-dir-lock.js'
import { adminRequest, positional, resolveTarget, withStoppedHubBindings } from './admin-client.js'
import type { Command } from './run.js'

const common = {
  dataDir: { type: 'string', default: './edgefabric-hub', env: 'EDGEFABRIC_DATA_DIR', description: 'the hub data directory' },
  admin: { type: 'string', env: 'EDGEFABRIC_ADMIN_URL', description: 'admin address of a running hub (host:port or http://host:port); default: the hub running on --data-dir, if any' },
  adminToken: { type: 'string', env: 'EDGEFABRIC_ADMIN_TOKEN', placeholder: 'token', description: 'the hub\'s admin token (prefer the env var: flags show in ps)' },
  json: { type: 'boolean', default: false, description: 'print JSON' }
} as const

export const tokenSchema = defineConfig({
  node: { type: 'string', env: 'EDGEFABRIC_NODE', description: 'node name the token admits (required unless --reusable)' },
  ttl: { type: 'duration', default: '24h', min: '1s', max: '8760h', description: 'how long the token can be used for a FIRST join (a joined node never needs it again)' },
  reusable: { type: 'boolean', default: false, description: 'let the token bind ANY number of node keys until it expires or is revoked (provisioning many devices from one image); without --node it admits any node name. Anyone holding it can join new nodes: keep the TTL short' },
  init: { type: 'boolean', default: false, description: 'create the hub identity in --data-dir if it has none (otherwise a mistyped --data-dir is an error)' },
  ...common
})
const listSchema = defineConfig({ ...common })

const USAGE = `Usage: edgefabric token create --node NAME [--ttl 24h] [--data-dir DIR | --admin URL]
  edgefabric token create --node NAME [--ttl 24h] [--data-dir DIR | --admin URL]
  edgefabric token create --reusable [--node NAME] [--ttl 1h] ...
  edgefabric token list [--json] ...
  edgefabric token revoke JTI ...

A token is used for a node's FIRST join only: it binds the node's key, and
from then on the node authenticates with its key alone (it may expire).
Tokens are single use: a second node key presenting one is refused
(EF_TOKEN_USED). The token itself is never sent over the network.`

function noIdentity (dataDir: string): ConfigError {
  return new ConfigError('--data-dir', 'dataDir', `${dataDir} holds no hub identity (no identity/token.key). Check the path, or add --init to create a new hub identity there (edges joined to another hub cannot use its tokens)`)
}

async function offline<T> (dataDir: string, fn: (store: FileBindingStore) => Promise<T>): Promise<T> {
  if (!existsSync(join(dataDir, 'identity', 'token.key')) && !existsSync(join(dataDir, 'node-bindings.json'))) throw noIdentity(dataDir)
  return await withStoppedHubBindings(dataDir, fn)
}

function fmtTime (s: number): string { return new Date(s * 1000).toISOString().replace(/\.\d+Z$/, 'Z') }

export const tokenCommand: Command = {
  summary: 'Join tokens: token create --node NAME | token list | token revoke JTI',
  usage: `${USAGE}\n\n${configHelp(tokenSchema, { usage: 'Options:' })}`,
  async run (argv) {
    const [sub, ...rest] = argv
    if (sub === 'create') {
      const cfg = loadConfig(tokenSchema, { argv: rest, env: process.env })
      if (cfg.node === undefined && !cfg.reusable) throw new ConfigError('--node', 'node', 'required (or --reusable for a token that admits any node name)')
      const ttlSeconds = Math.ceil(cfg.ttl / 1000)
      const target = await resolveTarget(cfg)
      let token: string
      if (target.kind === 'api') {
        token = (await adminRequest(target, 'POST', '/v1/admin/tokens', { ...(cfg.node !== undefined ? { node: cfg.node } : {}), ttlSeconds, reusable: cfg.reusable })).token as string
      } else {
        if (!cfg.init && !existsSync(join(cfg.dataDir, 'identity', 'token.key'))) throw noIdentity(cfg.dataDir)
        const identity = await loadOrCreateHubIdentity(cfg.dataDir)
        token = createJoinToken(identity, { ...(cfg.node !== undefined ? { nodeId: cfg.node } : {}), ttlSeconds, reusable: cfg.reusable })
        // Record it for `token list` when nobody else holds the dir; a hub
        // running without an admin server records it at first use instead.
        if (await readLock(cfg.dataDir) === undefined) {
          const p = decodeJoinToken(token)
          await offline(cfg.dataDir, async s => await s.recordIssued({ jti: p.jti, node: p.node, exp: p.exp, reusable: p.reuse === true }, Date.now()))
        }
      }
      process.stdout.write(token + '\n')
      return 0
    }
    if (sub === 'list') {
      const cfg = loadConfig(listSchema, { argv: rest, env: process.env })
      const target = await resolveTarget(cfg)
      const tokens = target.kind === 'api' ? (await adminRequest(target, 'GET', '/v1/admin/tokens')).tokens : await offline(target.dataDir, async s => await s.tokens())
      if (cfg.json) { process.stdout.write(JSON.stringify(tokens) + '\n'); return 0 }
      process.stdout.write(`${'JTI'.padEnd(18)} ${'NODE'.padEnd(20)} ${'KIND'.padEnd(10)} ${'EXPIRES'.padEnd(21)} ${'USES'.padEnd(5)} STATE\n`)
      for (const r of tokens as Array<{ jti: string, node: string, reusable: boolean, exp: number, useCount: number, revokedAt?: number }>) {
        const state = r.revokedAt !== undefined ? 'revoked' : r.exp * 1000 <= Date.now() ? 'expired' : r.useCount > 0 && !r.reusable ? 'used' : 'usable'
        process.stdout.write(`${r.jti.padEnd(18)} ${r.node.padEnd(20)} ${(r.reusable ? 'reusable' : 'single').padEnd(10)} ${fmtTime(r.exp).padEnd(21)} ${String(r.useCount).padEnd(5)} ${state}\n`)
      }
      return 0
    }
    if (sub === 'revoke') {
      const [jti, more] = positional(rest)
      if (jti === undefined) throw new ConfigError('token revoke', 'jti', 'expected the token id to revoke (JTI column of "edgefabric token list")')
      const cfg = loadConfig(listSchema, { argv: more, env: process.env })
      const target = await resolveTarget(cfg)
      const revoked = target.kind === 'api'
        ? (await adminRequest(target, 'DELETE', `/v1/admin/tokens/${encodeURIComponent(jti)}`)).revoked as boolean
        : await offline(target.dataDir, async s => await s.revoke(jti, Date.now()))
      process.stdout.write(revoked ? `revoked ${jti}\n` : `${jti} was already revoked\n`)
      return 0
    }
    process.stderr.write(`edgefabric token: unknown sub-command ${sub === undefined ? '(none)' : `"${sub}"`}\n\n${USAGE}\n`)
    return 2
  }
}
