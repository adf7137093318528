/**
 * `edgefabric cloud --devices` as a real child process: the device API is
 * served on the admin port, and what an HTTP call acknowledged survives a
 * SIGKILL of the hub (registry in LMDB, `sync` durability).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { thermostat } from './cloud-helpers.js'
import { testdir } from '../testdir.js'

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

function cloud (dataDir: string, extraEnv: Record<string, string> = {}): { child: ChildProcess, admin: Promise<string> } {
  const child = spawn(process.execPath, [BIN, 'cloud', '--devices', '--listen', 'ws://127.0.0.1:0', '--admin', '127.0.0.1:0', '--data-dir', dataDir],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...extraEnv } })
  child.on('error', () => {})
  child.stderr?.resume()
  const admin = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('cloud did not print its device API URL')), 20_000)
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
      const m = /^devices (http:\/\/\S+)\/v1\/devices$/.exec(line)
      if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
    })
  })
  return { child, admin }
}

async function kill (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

const json = { 'content-type': 'application/json' }

t.test('cloud --devices: HTTP device API, acknowledged changes survive SIGKILL', async t => {
  const dataDir = testdir(t) + '/hub'
  const a = cloud(dataDir)
  t.teardown(() => kill(a.child))
  const url = await a.admin
  // Changes need the admin token the hub generated into its data dir at first start.
  const auth = { ...json, authorization: `Bearer ${(await readFile(`${dataDir}/admin-token`, 'utf8')).trim()}` }
  let res = await fetch(`${url}/v1/device-models/default/thermostat`, { method: 'PUT', headers: auth, body: JSON.stringify({ properties: thermostat.properties }) })
  t.equal(res.status, 200)
  res = await fetch(`${url}/v1/devices/default/t1`, { method: 'PUT', headers: auth, body: JSON.stringify({ model: 'default/thermostat', nodeId: 'edge-1' }) })
  t.equal(res.status, 200)
  res = await fetch(`${url}/v1/devices/default/t1/desired`, { method: 'PUT', headers: auth, body: JSON.stringify({ target: 27.5 }) })
  const acked = await res.json() as { revision: number }
  await kill(a.child) // no graceful close

  const b = cloud(dataDir, { EDGEFABRIC_ADMIN_TOKEN: 'tok' })
  t.teardown(() => kill(b.child))
  const url2 = await b.admin
  t.equal((await fetch(`${url2}/v1/devices/default/t1/desired`, { method: 'PUT', headers: json, body: JSON.stringify({ target: 1 }) })).status, 403, 'EDGEFABRIC_ADMIN_TOKEN guards changes (loopback reads stay open, read-only)')
  t.equal((await fetch(`${url2}/v1/devices/default/t1`, { headers: { authorization: 'Bearer wrong' } })).status, 401, 'a wrong token is refused')
  const d = await (await fetch(`${url2}/v1/devices/default/t1`, { headers: { authorization: 'Bearer tok' } })).json() as { revision: number, desired: Record<string, { value: unknown }>, nodeId: string }
  t.equal(d.desired.target?.value, 27.5, 'acknowledged desired value survived SIGKILL')
  t.equal(d.revision, acked.revision)
  t.equal(d.nodeId, 'edge-1')
})
