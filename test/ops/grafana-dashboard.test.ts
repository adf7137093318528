/**
 * ops/grafana/edgefabric.json against a real scrape (issue 15): every metric
 * the dashboard queries exists in the /metrics of a running hub or edge, and
 * every edgefabric family the two export is on the dashboard (Node process
 * families: a representative few). Real hub and edge on loopback, with the
 * device registry, an embedded MQTT broker and --process-metrics.
 */
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'

const DASHBOARD = new URL('../../ops/grafana/edgefabric.json', import.meta.url)

function families (text: string): Map<string, string> {
  const m = new Map<string, string>()
  for (const line of text.split('\n')) {
    const x = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (x !== null) m.set(x[1] as string, x[2] as string)
  }
  return m
}

function queried (dash: unknown): Set<string> {
  const out = new Set<string>()
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) { v.forEach(walk); return }
    if (typeof v !== 'object' || v === null) return
    for (const [k, x] of Object.entries(v)) {
      if (k === 'expr' && typeof x === 'string') for (const m of x.matchAll(/\bedgefabric_[a-z0-9_]+/g)) out.add(m[0])
      else walk(x)
    }
  }
  walk(dash)
  return out
}

t.test('every metric on the dashboard exists in a real scrape, and every family is on the dashboard', async t => {
  const dir = t.testdir({})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub', devices: true, metrics: { processMetrics: true } })
  t.teardown(() => hub.close(100))
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: dir + '/edge',
    devices: { mode: 'internal', mqtt: { host: '127.0.0.1', port: 0 } }, metrics: { processMetrics: true }
  })
  t.teardown(() => edge.close())
  await edge.waitConnected(10_000)
  const scrape = async (url: string): Promise<string> => {
    const r = await fetch(url + '/metrics')
    t.equal(r.status, 200)
    return await r.text()
  }
  const have = new Map([...families(await scrape(hub.adminUrl as string)), ...families(await scrape(edge.adminUrl as string))])
  const dash = JSON.parse(await readFile(DASHBOARD, 'utf8')) as unknown
  const names = queried(dash)
  t.ok(names.size > 50, `the dashboard queries ${names.size} series names`)
  const resolve = (n: string): string | undefined => {
    if (have.has(n)) return n
    const base = n.replace(/_(bucket|sum|count)$/, '')
    return have.get(base) === 'histogram' ? base : undefined
  }
  const missing = [...names].filter(n => resolve(n) === undefined)
  t.same(missing, [], 'no dashboard query names a metric the roles do not export')
  const used = new Set([...names].map(resolve))
  const absent = [...have.keys()].filter(f => f.startsWith('edgefabric_') && !f.startsWith('edgefabric_process_') && !used.has(f))
  t.same(absent, [], 'every edgefabric metric family is on the dashboard')
})
