/**
 * `edgefabric edge --mqtt-mode …` as a real child process (dist/, built by
 * `npm test`): the embedded broker comes up, a device authenticates with a
 * credential issued by the cloud registry and gets its twin; a bad mode is
 * refused naming the flag.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Hub } from '../../src/hub/hub.js'
import { Mapper, MODEL, T } from './edge-helpers.js'
import { testdir } from '../testdir.js'

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

t.test('edge CLI starts the embedded broker with --mqtt-mode internal', async t => {
  const dir = testdir(t, {})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub', admin: false, devices: true, durability: 'relaxed' })
  t.teardown(() => hub.close(200))
  await hub.devices!.upsertModel(MODEL)
  await hub.devices!.upsertDevice({ namespace: 'default', name: 'dev1', model: 'default/thermostat', labels: {}, attributes: {}, nodeId: 'edge-cli' })
  await hub.devices!.setDesired('default', 'dev1', { target: 21 })
  const cred = await hub.devices!.issueCredential('default', 'dev1')

  const child = spawn(process.execPath, [BIN, 'edge', '--hub', hub.urls[0] as string, '--node', 'edge-cli', '--token', hub.createToken('edge-cli'),
    '--data-dir', dir + '/edge', '--admin', 'off', '--durability', 'relaxed', '--mqtt-mode', 'internal', '--mqtt-port', '0', '--dmi', 'off'], { stdio: ['ignore', 'pipe', 'pipe'] })
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
  let dev: Mapper | undefined
  for (let i = 0; dev === undefined; i++) { // the credential arrives with the snapshot
    dev = await Mapper.connect(t, url, { username: cred.username, password: cred.password }).catch(e => { if (i > 100) throw e; return undefined })
    if (dev === undefined) await new Promise(resolve => setTimeout(resolve, 100))
  }
  await dev.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  let got: any
  for (let i = 0; i < 100; i++) { // the snapshot may still be on its way
    got = await dev.request(T('dev1/twin/get'), {})
    if (got.twin !== undefined) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.equal(got.twin?.target?.expected?.value, '21', 'twin served by the CLI edge')
  await dev.client.endAsync()
  child.kill('SIGTERM')
  const code = await new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  t.equal(code, 0, `clean exit ${err}`)
})

t.test('edge CLI refuses a bad --mqtt-mode', async t => {
  const child = spawn(process.execPath, [BIN, 'edge', '--hub', 'ws://127.0.0.1:1', '--node', 'n', '--token', 'x', '--mqtt-mode', 'sideways'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', d => { err += String(d) })
  const code = await new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  t.not(code, 0)
  t.match(err, /--mqtt-mode/)
})
