/**
 * `edgefabric edge --dmi-socket PATH` / `--dmi off` as a real child process
 * (dist/, built by `npm test`): DMI comes up on the given socket with the
 * MQTT device twins, a mapper registers and reports through it to the
 * cloud; `--dmi off` leaves it out; a bad value is refused naming the flag.
 */
import t, { type Test } from 'tap'
import type { Hub } from '../../src/hub/hub.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { EdgeClient, MODEL, modbusDevice, socketPath, startHub, until } from './dmi-helpers.js'
import { testdir } from '../testdir.js'

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

async function lines (child: ReturnType<typeof spawn>, want: RegExp): Promise<string> {
  let out = ''
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${String(want)} line: ${out}`)), 20_000)
    child.stdout?.on('data', d => {
      out += String(d)
      if (want.test(out)) { clearTimeout(timer); resolve(out) }
    })
  })
}

/** A hub with device dev1 bound to `node`, and the edge CLI args for that node with DMI on a socket in the test dir. */
async function setup (t: Test, node: string, mqtt: string[]): Promise<{ hub: Hub, sock: string, args: string[] }> {
  const dir = testdir(t, {})
  const hub = await startHub(t, dir + '/hub')
  await hub.devices!.upsertModel(MODEL)
  await hub.devices!.upsertDevice(modbusDevice('dev1', node))
  const sock = socketPath(t, dir, 'dmi.sock')
  const args = ['edge', '--hub', hub.urls[0] as string, '--node', node, '--token', hub.createToken(node),
    '--data-dir', dir + '/edge', '--admin', 'off', '--durability', 'relaxed', ...mqtt, '--dmi-socket', sock]
  return { hub, sock, args }
}

/** Start the CLI edge, wait for its `dmi unix:` line, register a mapper until the edge has its device. */
async function startAndRegister (t: Test, args: string[], sock: string): Promise<{ child: ChildProcess, out: string, c: EdgeClient, res: any }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const out = await lines(child, /^dmi unix:\S+$/m)
  const c = new EdgeClient(`unix:${sock}`)
  t.teardown(() => c.close())
  let res: any
  for (let i = 0; i < 100; i++) { // the snapshot may still be on its way
    res = await c.register('m', 'modbus', `/tmp/efdmi-cli-mapper-${process.pid}.sock`) // nobody listens: pushes just retry
    if (res.deviceList.length > 0) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return { child, out, c, res }
}

t.test('edge CLI serves DMI on --dmi-socket, and not with --dmi off', async t => {
  const { hub, sock, args } = await setup(t, 'edge-cli', ['--mqtt-mode', 'internal', '--mqtt-port', '0'])
  const { child, out, c, res } = await startAndRegister(t, args, sock)
  t.match(out, `dmi unix:${sock}`)
  t.equal(res.deviceList[0]?.name, 'dev1')
  await c.report('dev1', { temperature: '22' })
  await until(() => hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value === 22, 'report at the cloud')
  c.close()
  child.kill('SIGTERM')
  t.equal(await new Promise<number | null>(resolve => child.on('exit', code => resolve(code))), 0, 'clean exit')
  t.notOk(existsSync(sock), 'socket removed at shutdown')

  const off = spawn(process.execPath, [BIN, ...args, '--dmi', 'off'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (off.exitCode === null) off.kill('SIGKILL') })
  const out2 = await lines(off, /^mqtt \S+$/m)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.notMatch(out2, /^dmi /m)
  t.notOk(existsSync(sock), 'no socket with --dmi off')
  off.kill('SIGTERM')
  await new Promise(resolve => off.on('exit', resolve))
})

// regression: DMI needed the MQTT twins on (--mqtt-mode off meant no DMI), so a mapper-framework-only
// site had to run an MQTT broker it never used.
t.test('--dmi on with --mqtt-mode off: DMI mappers only, no MQTT broker', async t => {
  const { hub, sock, args } = await setup(t, 'edge-dmi', ['--mqtt-mode', 'off', '--dmi', 'on'])
  const { child, out, c, res } = await startAndRegister(t, args, sock)
  t.notMatch(out, /^mqtt /m, 'no MQTT broker started')
  t.equal(res.deviceList[0]?.name, 'dev1', 'the mapper gets its device')
  await c.report('dev1', { temperature: '21.5' })
  await until(() => hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value === 21.5, 'report at the cloud')
  t.equal(hub.devices!.getDevice('default', 'dev1')?.syncBlocked, undefined, 'the hub sees an edge that serves devices')
  c.close()
  child.kill('SIGTERM')
  t.equal(await new Promise<number | null>(resolve => child.on('exit', code => resolve(code))), 0, 'clean exit')
})

t.test('edge CLI refuses a bad --dmi', async t => {
  const child = spawn(process.execPath, [BIN, 'edge', '--hub', 'ws://127.0.0.1:1', '--node', 'n', '--token', 'x', '--dmi', 'maybe'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', d => { err += String(d) })
  const code = await new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  t.not(code, 0)
  t.match(err, /--dmi/)
})
