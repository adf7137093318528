/**
 * Issue 12 operator verbs and the message CLI, all as real processes against
 * a real hub and edge: token create/list/revoke, node list/remove (session
 * cut, token revoked, edge exits), send/request/broadcast/sub through the
 * hub's admin API (found through the data dir's lock), the same verbs on the
 * data dir of a stopped hub, `token create` refusing a data dir without a
 * hub identity unless --init, and one process per data dir.
 */
import { once } from 'node:events'
import { createServer } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { freePort, httpGet, run, start, eventually, type Proc } from './procs.js'

// Many short CLI processes on a shared 2-core machine: each start can take seconds.
t.setTimeout(400_000)

t.test('operator and message verbs against a running hub, then a stopped one', { timeout: 380_000 }, async t => {
  const root = t.testdir({})
  const hubDir = join(root, 'hub')
  const port = await freePort()
  const url = `wss://127.0.0.1:${port}`
  const procs: Proc[] = []
  t.teardown(async () => { for (const p of procs) { p.child.kill('SIGKILL'); await p.exit(5000) } })
  const hub = start(['cloud', '--listen', url, '--data-dir', hubDir, '--admin', '127.0.0.1:0', '--heartbeat', '1s'])
  procs.push(hub)
  await hub.waitFor(/^ready$/)
  const D = ['--data-dir', hubDir]

  // tokens through the running hub (found via the lock file's admin URL)
  const tok = await run(['token', 'create', '--node', 'edge-1', ...D])
  t.equal(tok.code, 0, tok.stderr)
  const token = tok.stdout.trim()
  const spare = (await run(['token', 'create', '--node', 'edge-9', '--ttl', '1h', ...D])).stdout.trim()
  const reusable = await run(['token', 'create', '--reusable', '--ttl', '10m', ...D])
  t.equal(reusable.code, 0, reusable.stderr)
  let list = JSON.parse((await run(['token', 'list', '--json', ...D])).stdout) as Array<{ jti: string, node: string, reusable: boolean, useCount: number, revokedAt?: number }>
  t.equal(list.length, 3, 'issued tokens are listed before use')
  t.same(list.filter(r => r.reusable).map(r => r.node), ['*'])

  // an app on the edge's loopback, reachable through its ServiceBus
  const app = createServer((_req, res) => res.end('hi from the edge app'))
  app.listen(0, '127.0.0.1')
  await once(app, 'listening')
  t.teardown(() => app.close())
  const appPort = (app.address() as { port: number }).port

  // an edge joins; node list shows it
  const edge = start(['edge', '--hub', url, '--node', 'edge-1', '--token', token, '--data-dir', join(root, 'edge'), '--admin', 'off',
    '--label', 'zone=a', '--servicebus-port', String(appPort), '--upstream-port', '0', '--local-api-port', '0', '--backoff-cap', '300ms'])
  procs.push(edge)
  await edge.waitFor(/^connected /)
  const upstream = (await edge.waitFor(/^upstream (\S+)/))[1] as string
  const localApi = (await edge.waitFor(/^local-api (\S+)/))[1] as string
  const nodes = JSON.parse((await run(['node', 'list', '--json', ...D])).stdout) as Array<{ nodeId: string, status: string }>
  t.same(nodes.map(n => [n.nodeId, n.status]), [['edge-1', 'connected']])
  list = JSON.parse((await run(['token', 'list', '--json', ...D])).stdout)
  t.equal(list.find(r => r.node === 'edge-1')?.useCount, 1, 'the join is recorded on the token')

  // sub prints what the edge sends up
  const sub = start(['sub', '--node', 'edge-1', '--resource', 'default/telemetry/', ...D])
  procs.push(sub)
  await sub.waitFor(/^# subscribed/)
  const posted = await fetch(`${upstream}/v1/upstream`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-edgefabric-client': 'operator-verbs-test' }, body: JSON.stringify({ group: 'app', resource: 'default/telemetry/t1', operation: 'upload', content: { celsius: 21.5 } }) })
  t.ok(posted.status < 300, `upstream accepted (${posted.status})`)
  const line = JSON.parse((await sub.waitFor(/^\{.*"default\/telemetry\/t1".*$/))[0]) as { node: string, content: unknown }
  t.same([line.node, line.content], ['edge-1', { celsius: 21.5 }], 'sub prints the upstream message as a JSON line')

  // send (reliable) lands in the edge's store; request gets an answer; broadcast by label
  const sent = await run(['send', 'edge-1', '--resource', 'default/config/app', '--op', 'update', '--json', '{"on":true}', '--reliable', '--resource-version', '1', ...D])
  t.equal(sent.code, 0, sent.stderr)
  t.match(JSON.parse(sent.stdout), { status: 'queued' })
  await eventually(async () => (await httpGet(`${localApi}/v1/resources/default/config/app`)).status === 200, 10_000)
  const req = await run(['request', 'edge-1', '--resource', 'default/nothing/here', '--timeout', '5s', ...D])
  t.equal(req.code, 1)
  t.match(req.stderr, /EF_NO_MODULE/, 'a request nobody owns is answered with the edge\'s error, not a hang')
  const sb = await run(['request', 'edge-1', '--group', 'servicebus', '--op', 'http', '--resource', `servicebus/http/${appPort}`,
    '--json', JSON.stringify({ method: 'GET', path: '/hello', port: appPort }), ...D])
  t.equal(sb.code, 0, sb.stderr)
  const answer = JSON.parse(sb.stdout) as { operation: string, content: { status: number, body: { base64: string } } }
  t.equal(answer.content.status, 200)
  t.equal(Buffer.from(answer.content.body.base64, 'base64').toString(), 'hi from the edge app', 'request answered through the edge ServiceBus')
  const bc = await run(['broadcast', '--label', 'zone=a', '--resource', 'default/config/all', '--json', '{}', ...D])
  t.same(JSON.parse(bc.stdout).sent, ['edge-1'])
  const off = await run(['send', 'edge-7', '--resource', 'x', ...D])
  t.equal(off.code, 1)
  t.match(off.stderr, /EF_NODE_OFFLINE/)

  // node remove: binding gone, session cut, the token it used revoked: the edge exits for good
  const removed = await run(['node', 'remove', 'edge-1', ...D])
  t.equal(removed.code, 0, removed.stderr)
  t.equal(await edge.exit(), 3, 'removed edge stops')
  t.match(edge.stderr(), /EF_TOKEN_REVOKED/, 'its replayed token is revoked')
  list = JSON.parse((await run(['token', 'list', '--json', ...D])).stdout)
  t.ok(list.find(r => r.node === 'edge-1')?.revokedAt, 'token list shows the revocation')
  const spareJti = list.find(r => r.node === 'edge-9')?.jti as string
  const rv = await run(['token', 'revoke', spareJti, ...D])
  t.equal(rv.code, 0, rv.stderr)
  const e9 = start(['edge', '--hub', url, '--node', 'edge-9', '--token', spare, '--data-dir', join(root, 'edge9'), '--admin', 'off'])
  procs.push(e9)
  t.equal(await e9.exit(), 3)
  t.match(e9.stderr(), /EF_TOKEN_REVOKED/)

  // one process per data dir
  const second = await run(['cloud', '--listen', `wss://127.0.0.1:${await freePort()}`, '--data-dir', hubDir, '--admin', 'off'])
  t.equal(second.code, 1)
  t.match(second.stderr, new RegExp(`in use by a running edgefabric hub \\(pid ${hub.child.pid}\\).*EF_DATA_DIR_LOCKED`))

  // stopped hub: the same verbs act on the data dir
  hub.child.kill('SIGTERM')
  t.equal(await hub.exit(), 0)
  const offline = await run(['token', 'create', '--node', 'edge-2', ...D])
  t.equal(offline.code, 0, offline.stderr)
  list = JSON.parse((await run(['token', 'list', '--json', ...D])).stdout)
  t.ok(list.some(r => r.node === 'edge-2'), 'offline token create is recorded')
  t.equal(JSON.parse((await run(['node', 'list', '--json', ...D])).stdout).length, 0)

  // token create refuses a data dir with no hub identity unless --init
  const typo = await run(['token', 'create', '--node', 'edge-1', '--data-dir', join(root, 'hbu')])
  t.equal(typo.code, 2)
  t.match(typo.stderr, /--data-dir: .*holds no hub identity.*--init/)
  const init = await run(['token', 'create', '--node', 'edge-1', '--init', '--data-dir', join(root, 'fresh')])
  t.equal(init.code, 0, init.stderr)
  t.match(init.stdout, /^ef1\./)
})
