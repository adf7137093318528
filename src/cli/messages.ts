/**
 * Message verbs, like `nats pub/sub/req` (issue 12), through a running hub's
 * admin API (`--admin`, default the hub's default 127.0.0.1:9100, or the hub
 * running on `--data-dir`):
 *
 *   edgefabric send NODE --resource R [--op update] [--json '{…}'] [--reliable] [--resource-version V]
 *   edgefabric request NODE --resource R [--op query] [--json '{…}'] [--timeout 10s]
 *   edgefabric broadcast --label k=v --resource R [--op update] [--json '{…}']
 *   edgefabric sub [--node N] [--resource PREFIX]      JSON lines of what edges send up
 */
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import { ConfigError } from '../errors.js'
import { adminRequest, positional, resolveTarget } from './admin-client.js'
import type { Command } from './run.js'

const common = {
  admin: { type: 'string', env: 'EDGEFABRIC_ADMIN_URL', description: 'admin address of the hub (host:port or http://host:port); default: the hub running on --data-dir, else 127.0.0.1:9100' },
  adminToken: { type: 'string', env: 'EDGEFABRIC_ADMIN_TOKEN', placeholder: 'token', description: 'the hub\'s admin token (prefer the env var)' },
  dataDir: { type: 'string', default: './edgefabric-hub', env: 'EDGEFABRIC_DATA_DIR', description: 'find the running hub through its data directory' }
} as const

const sendSchema = defineConfig({
  resource: { type: 'string', required: true, description: 'resource, e.g. default/config/app' },
  op: { type: 'string', default: 'update', description: 'operation' },
  group: { type: 'string', default: 'cli', description: 'router group' },
  json: { type: 'string', default: 'null', description: 'content as JSON' },
  reliable: { type: 'boolean', default: false, description: 'send: durable, at-least-once (queued while the node is offline)' },
  resourceVersion: { type: 'string', description: 'send: the resource version (the edge keeps the newest version of each resource, readable offline; an older one is ignored)' },
  timeout: { type: 'duration', default: '10s', description: 'request: how long to wait for the answer' },
  label: { type: 'string[]', default: [], description: 'broadcast: node label selector key=value (repeatable, all must match)' },
  ...common
})
const subSchema = defineConfig({
  node: { type: 'string', description: 'only messages from this node' },
  resource: { type: 'string', description: 'only resources starting with this prefix' },
  ...common
})

function content (text: string): unknown {
  try { return JSON.parse(text) } catch (err) { throw new ConfigError('--json', 'json', `not valid JSON (${(err as Error).message}); e.g. --json '{"on":true}'`) }
}

async function target (cfg: { admin?: string | undefined, adminToken?: string | undefined, dataDir: string }): Promise<{ base: string, token: string | undefined }> {
  const t = await resolveTarget(cfg)
  return t.kind === 'api' ? t : { base: 'http://127.0.0.1:9100', token: cfg.adminToken }
}

function needNode (node: string | undefined, verb: string): string {
  if (node === undefined) throw new ConfigError(verb, 'node', `expected the node name first, e.g. "edgefabric ${verb} edge-1 --resource default/config/app --json '{}'"`)
  return node
}

export const sendCommand: Command = {
  summary: 'Send a message to a node: send NODE --resource R [--op update] [--json ...] [--reliable]',
  usage: configHelp(sendSchema, { usage: 'Usage: edgefabric send NODE --resource R [--op update] [--json \'{...}\'] [--reliable]' }),
  async run (argv) {
    const [n, rest] = positional(argv)
    const cfg = loadConfig(sendSchema, { argv: rest, env: process.env })
    const node = needNode(n, 'send')
    const r = await adminRequest(await target(cfg), 'POST', '/v1/messages/send', { node, resource: cfg.resource, operation: cfg.op, group: cfg.group, content: content(cfg.json), reliable: cfg.reliable, ...(cfg.resourceVersion !== undefined ? { resourceVersion: cfg.resourceVersion } : {}) })
    process.stdout.write(JSON.stringify(r) + '\n')
    return 0
  }
}

export const requestCommand: Command = {
  summary: 'Send a request to a node and print its answer: request NODE --resource R [--op query] [--json ...]',
  usage: configHelp(sendSchema, { usage: 'Usage: edgefabric request NODE --resource R [--op query] [--json \'{...}\'] [--timeout 10s]' }),
  async run (argv) {
    const [n, rest] = positional(argv)
    const cfg = loadConfig(sendSchema, { argv: rest, env: process.env })
    const node = needNode(n, 'request')
    const op = rest.includes('--op') ? cfg.op : 'query'
    const r = await adminRequest(await target(cfg), 'POST', '/v1/messages/request', { node, resource: cfg.resource, operation: op, group: cfg.group, content: content(cfg.json), timeoutMs: cfg.timeout }, cfg.timeout + 5000)
    process.stdout.write(JSON.stringify(r) + '\n')
    return r.operation === 'error' ? 1 : 0
  }
}

export const broadcastCommand: Command = {
  summary: 'Send to every connected node with matching labels: broadcast --label k=v --resource R [--json ...]',
  usage: configHelp(sendSchema, { usage: 'Usage: edgefabric broadcast --label k=v [--label ...] --resource R [--op update] [--json \'{...}\']' }),
  async run (argv) {
    const cfg = loadConfig(sendSchema, { argv, env: process.env })
    const labels: Record<string, string> = {}
    for (const l of cfg.label) {
      const i = l.indexOf('=')
      if (i <= 0) throw new ConfigError('--label', 'label', `expected key=value, got "${l}"`)
      labels[l.slice(0, i)] = l.slice(i + 1)
    }
    const r = await adminRequest(await target(cfg), 'POST', '/v1/messages/broadcast', { labels, resource: cfg.resource, operation: cfg.op, group: cfg.group, content: content(cfg.json) })
    process.stdout.write(JSON.stringify(r) + '\n')
    return 0
  }
}

export const subCommand: Command = {
  summary: 'Print what edges send up, as JSON lines: sub [--node N] [--resource PREFIX]',
  usage: configHelp(subSchema, { usage: 'Usage: edgefabric sub [--node N] [--resource PREFIX]' }),
  async run (argv) {
    const cfg = loadConfig(subSchema, { argv, env: process.env })
    const t = await target(cfg)
    const q = new URLSearchParams()
    if (cfg.node !== undefined) q.set('node', cfg.node)
    if (cfg.resource !== undefined) q.set('resource', cfg.resource)
    const ac = new AbortController()
    const stop = (): void => ac.abort()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    try {
      const res = await fetch(new URL(`/v1/messages/sub?${q.toString()}`, t.base), { headers: t.token !== undefined ? { authorization: `Bearer ${t.token}` } : {}, signal: ac.signal })
      if (!res.ok || res.body === null) {
        await adminRequest(t, 'GET', `/v1/messages/sub?${q.toString()}`) // throws the hub's typed error
        return 1
      }
      process.stdout.write(`# subscribed to ${t.base}${cfg.node !== undefined ? ` node=${cfg.node}` : ''}${cfg.resource !== undefined ? ` resource=${cfg.resource}*` : ''}\n`)
      let buf = ''
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(chunk).toString('utf8')
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          if (line.trim() !== '') process.stdout.write(line + '\n')
        }
      }
      return 0
    } catch (err) {
      if (ac.signal.aborted) return 0
      throw err
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }
  }
}
