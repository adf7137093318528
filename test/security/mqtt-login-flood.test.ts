/**
 * Issue 13 item 8: a wrong-password flood (64 concurrent scrypt checks) kept
 * a real device from its first login for 8.2 s. Now failures are limited per
 * source (20 per minute, then refused without a check) and per username
 * (serialised in the suspect queue), and a check from a source with no
 * failures and nothing pending is served before suspect ones, so the real
 * device waits for at most the checks already running.
 *
 * Attackers connect from 127.0.0.2 (a socket bound there: MQTT.js with its
 * own stream builder), the real device from 127.0.0.1. Both figures — the
 * real device's first login alone and under the flood — come from this run.
 */
import t from 'tap'
import { connect as netConnect } from 'node:net'
import mqtt from 'mqtt'
import { edgeWithDevices } from './mqtt-helpers.js'

async function login (url: string, opts: mqtt.IClientOptions, localAddress?: string): Promise<{ ms: number, code: number }> {
  const u = new URL(url)
  const start = performance.now()
  const c = localAddress === undefined
    ? mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 30_000, ...opts })
    : new mqtt.MqttClient(() => netConnect({ host: u.hostname, port: Number(u.port), localAddress }), { reconnectPeriod: 0, connectTimeout: 30_000, protocolVersion: 4, ...opts })
  const code = await new Promise<number>(resolve => {
    c.once('connect', () => resolve(0))
    c.once('error', (err: Error & { code?: number }) => resolve(typeof err.code === 'number' ? err.code : -1))
  })
  const ms = performance.now() - start
  await c.endAsync(true)
  return { ms, code }
}

t.test('a wrong-password flood does not keep the real device from logging in', async t => {
  // A long queue deadline so that on a loaded machine every flood attempt is either checked or
  // refused for its source, never timed out ('busy' is also CONNACK 3).
  const { edge, url, secrets } = await edgeWithDevices(t, ['a', 'b'], { auth: { maxFailuresPerSource: 20, queueTimeoutMs: 120_000 } })
  // baseline, same run: a first login (scrypt, nothing cached) with no flood
  const base = await login(url, { username: 'default/a', password: secrets.a, clientId: '' })
  t.equal(base.code, 0)

  // the flood: 64 concurrent wrong passwords for the real device's own username, from 127.0.0.2
  const flood = Array.from({ length: 64 }, async (_, i) => await login(url, { username: 'default/b', password: `guess-${i}`, clientId: '' }, '127.0.0.2'))
  await new Promise(resolve => setTimeout(resolve, 20)) // the flood's CONNECTs are in
  const real = await login(url, { username: 'default/b', password: secrets.b, clientId: '' })
  const results = await Promise.all(flood)
  t.comment(`first login of the real device: ${base.ms.toFixed(0)} ms alone, ${real.ms.toFixed(0)} ms during 64 concurrent wrong-password logins (ratio ${(real.ms / base.ms).toFixed(1)}x)`)
  t.comment(`flood outcomes: ${results.filter(r => r.code === 4).length} checked and refused (bad password), ${results.filter(r => r.code === 3).length} refused without a check (source over its failure limit)`)
  t.equal(real.code, 0, 'the real device logs in on its first attempt (not "server unavailable")')
  t.notOk(results.some(r => r.code === 0), 'no attacker got in')
  t.ok(results.filter(r => r.code === 4).length <= 20 + 4, 'at most 20 failures (+ the checks already running) cost a scrypt check')
  t.ok(results.filter(r => r.code === 3).length >= 64 - 24, 'beyond that the source is refused without one')
  t.ok((edge.devices?.broker !== undefined), 'embedded broker up')
  // and the source stays refused for the window, even with the right password for another device
  const blocked = await login(url, { username: 'default/a', password: secrets.a, clientId: '' }, '127.0.0.2')
  t.equal(blocked.code, 3, 'the flooding address is refused for the failure window')
  const fine = await login(url, { username: 'default/a', password: secrets.a, clientId: '' })
  t.equal(fine.code, 0, 'other addresses are not')
})

t.test('the same flood spread over 64 source addresses (the hard case)', async t => {
  const { url, secrets } = await edgeWithDevices(t, ['a', 'b', 'c'])
  const base = await login(url, { username: 'default/c', password: secrets.c, clientId: '' })
  // Every attacker address is fresh, so per-source limits cannot tell them apart from a first
  // login. Usernames are served round-robin: another device's first login is not stuck behind
  // the flood; the targeted device itself competes with the guesses for its own username.
  const flood = Array.from({ length: 64 }, async (_, i) => await login(url, { username: 'default/b', password: `guess-${i}`, clientId: '' }, `127.0.1.${i + 1}`))
  await new Promise(resolve => setTimeout(resolve, 20))
  const other = await login(url, { username: 'default/a', password: secrets.a, clientId: '' })
  const start = performance.now()
  let real = await login(url, { username: 'default/b', password: secrets.b, clientId: '' })
  let attempts = 1
  while (real.code !== 0 && attempts < 10) { attempts++; real = await login(url, { username: 'default/b', password: secrets.b, clientId: '' }) } // as paho's auto-reconnect would
  const total = performance.now() - start
  const results = await Promise.all(flood)
  t.comment(`64 attacker addresses on default/b: another device's first login ${other.ms.toFixed(0)} ms vs ${base.ms.toFixed(0)} ms alone (ratio ${(other.ms / base.ms).toFixed(1)}x); the targeted device got in after ${total.toFixed(0)} ms and ${attempts} attempt(s)`)
  t.equal(other.code, 0, 'another device logs in on its first attempt during the flood')
  t.equal(real.code, 0, 'the targeted device gets in (retrying like a mapper)')
  t.notOk(results.some(r => r.code === 0), 'no attacker got in')
})
