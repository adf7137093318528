/**
 * `edgefabric status`: ask a running hub's (or edge's) admin API.
 */
import { request } from 'node:http'
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import type { Command } from './run.js'
import { adminUrl, parseAdminAddress } from '../config/address.js'
import { ConfigError } from '../errors.js'

export const statusSchema = defineConfig({
  admin: { type: 'string', default: 'http://127.0.0.1:9100', env: 'EDGEFABRIC_ADMIN_URL', description: 'admin address of the hub or edge: host:port or http://host:port' },
  json: { type: 'boolean', default: false, description: 'print the raw JSON' },
  timeout: { type: 'duration', default: '5s', description: 'request timeout' }
})

function get (url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        if ((res.statusCode ?? 500) >= 400) reject(new Error(`${url} answered ${res.statusCode}: ${body.slice(0, 200)}`))
        else resolve(body)
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

interface NodeRow { nodeId: string, status: string, transport?: string, rttMs?: number, lastSeen?: string, labels?: Record<string, string> }

export const statusCommand: Command = {
  summary: 'Show the status of a running hub or edge (asks its admin API).',
  usage: configHelp(statusSchema, { usage: 'Usage: edgefabric status [--admin URL] [--json]' }),
  async run (argv) {
    const cfg = loadConfig(statusSchema, { argv, env: process.env })
    const base = adminUrl(parseAdminAddress(cfg.admin, m => new ConfigError('--admin', 'admin', m)))
    let body: string
    try {
      body = await get(new URL('/status', base).href, cfg.timeout)
    } catch (err) {
      process.stderr.write(`edgefabric status: ${(err as Error).message}\n`)
      return 1
    }
    if (cfg.json) { process.stdout.write(body + '\n'); return 0 }
    const s = JSON.parse(body) as { role?: string, listening?: string[], nodes?: NodeRow[], nodeId?: string, state?: string, rttMs?: number }
    if (s.role === 'edge') {
      process.stdout.write(`edge ${s.nodeId ?? '?'}: ${s.state ?? '?'}${s.rttMs !== undefined ? `, rtt ${s.rttMs} ms` : ''}\n`)
      return 0
    }
    process.stdout.write(`hub listening on ${(s.listening ?? []).join(', ')}\n`)
    const nodes = s.nodes ?? []
    process.stdout.write(`${nodes.filter(n => n.status === 'connected').length} of ${nodes.length} nodes connected\n`)
    for (const n of nodes) {
      const labels = Object.entries(n.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',')
      process.stdout.write(`  ${n.nodeId.padEnd(24)} ${n.status.padEnd(12)} ${(n.transport ?? '-').padEnd(12)} rtt ${n.rttMs === undefined ? '-' : n.rttMs.toFixed(1) + ' ms'}  ${labels}\n`)
    }
    return 0
  }
}
