/**
 * Issue 14 items 5 and 9 from the CLI: `edgefabric edge --mqtt-compat kubeedge
 * --mqtt-credential operator:… --mqtt-credential mapper:… --mqtt-allow-anonymous`
 * as a real child process (dist/): an operator sees every topic, a mapper its
 * devices, an anonymous loopback mapper works and the warning is printed.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Hub } from '../../src/hub/hub.js'
import { hashSecret } from '../../src/device/credentials.js'
import { parseMqttCredential } from '../../src/cli/edge.js'
import { isEdgeFabricError } from '../../src/errors.js'
import { Mapper, MODEL } from './edge-helpers.js'
import { createMessageState, createMessageTwinUpdate } from './kubeedge-structs.js'
import { testdir } from '../testdir.js'

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

t.test('--mqtt-credential parsing', async t => {
  const dir = testdir(t, { secret: 'pw-from-file\n' })
  const hash = await hashSecret('x')
  t.same(parseMqttCredential(`operator:ops:@${dir}/secret`), { username: 'ops', role: 'operator', devices: '*', password: 'pw-from-file' })
  t.same(parseMqttCredential(`mapper:m1:${hash}:default/a,default/b`), { username: 'm1', role: 'mapper', devices: ['default/a', 'default/b'], passwordHash: hash })
  t.same(parseMqttCredential(`mapper:m1:${hash}`), { username: 'm1', role: 'mapper', devices: '*', passwordHash: hash })
  for (const bad of ['admin:u:@x', 'operator::@x', 'operator:u:plaintext', `operator:u:${hash}:default/a`, 'mapper:u:@/no/such/file']) {
    let caught: unknown
    try { parseMqttCredential(bad) } catch (e) { caught = e }
    t.ok(isEdgeFabricError(caught, 'EF_CONFIG'), `refused: ${bad}`)
    t.notMatch((caught as Error).message, /plaintext/, 'the secret is not echoed')
  }
})

t.test('edge CLI: operator and mapper credentials, anonymous loopback mapper, compat payloads', async t => {
  const dir = testdir(t, { ops: 'ops-secret', m: 'mapper-secret' })
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub', admin: false, devices: true, durability: 'relaxed' })
  t.teardown(() => hub.close(200))
  await hub.devices!.upsertModel(MODEL)
  for (const name of ['dev1', 'dev2']) await hub.devices!.upsertDevice({ namespace: 'default', name, model: 'default/thermostat', labels: {}, attributes: {}, nodeId: 'edge-cli' })
  const child = spawn(process.execPath, [BIN, 'edge', '--hub', hub.urls[0] as string, '--node', 'edge-cli', '--token', hub.createToken('edge-cli'),
    '--data-dir', dir + '/edge', '--admin', 'off', '--durability', 'relaxed', '--mqtt-mode', 'internal', '--mqtt-port', '0', '--mqtt-compat', 'kubeedge', '--dmi', 'off',
    '--mqtt-allow-anonymous', '--mqtt-credential', `operator:ops:@${dir}/ops`, '--mqtt-credential', `mapper:m1:@${dir}/m:default/dev1`], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  let err = ''
  child.stderr.on('data', d => { err += String(d) })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no mqtt line: ${out} ${err}`)), 20_000)
    child.stdout.on('data', d => {
      out += String(d)
      const m = /^mqtt (mqtt:\/\/\S+)$/m.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
    })
  })
  for (let i = 0; i < 100 && !/WARNING: MQTT anonymous access is on/.test(err); i++) await new Promise(resolve => setTimeout(resolve, 50))
  t.match(err, /WARNING: MQTT anonymous access is on/, 'warning at start')
  const ops = await Mapper.connect(t, url, { username: 'ops', password: 'ops-secret' })
  await ops.client.subscribeAsync('#', { qos: 0 })
  await ops.client.subscribeAsync('$hw/events/#', { qos: 0 })
  const m1 = await Mapper.connect(t, url, { username: 'm1', password: 'mapper-secret', clientId: '' })
  await m1.client.subscribeAsync('$hw/events/#', { qos: 0 })
  const anon = await Mapper.connect(t, url, { clientId: '' })
  // the snapshots may still be on their way
  let res: any
  for (let i = 0; i < 100; i++) {
    await anon.client.subscribeAsync('$hw/events/device/default/dev2/state/update/result', { qos: 0 })
    anon.client.publish('$hw/events/device/default/dev2/state/update', createMessageState('OK'), { qos: 0 })
    res = await anon.next('$hw/events/device/default/dev2/state/update/result', () => true, 500).catch(() => undefined)
    if (res?.device !== undefined) break
  }
  t.equal(res?.device?.state, 'OK', 'anonymous loopback mapper acts for the node\'s devices')
  t.match(res?.device?.lastOnlineTime, /Z$/)
  m1.client.publish('$hw/events/device/default/dev1/twin/update', createMessageTwinUpdate('temperature', 'float', '21.000000'), { qos: 0 })
  const r = await m1.next('$hw/events/device/default/dev1/twin/update/result')
  t.equal(r.twin.temperature.actual.value, '21.000000')
  await ops.next('$hw/events/device/default/dev2/state/update/result')
  t.notOk(m1.messages.some(x => x.topic.includes('/dev2/')), 'the mapper credential sees only its device')
  for (const c of [ops, m1, anon]) await c.client.endAsync()
  child.kill('SIGTERM')
  const code = await new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  t.equal(code, 0, `clean exit ${err}`)
})
