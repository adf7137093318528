/**
 * The real CLI, spawned as child processes: cloud, token, edge, status; a
 * frozen edge (SIGSTOP) detected within 3 × heartbeat; graceful signals;
 * refusals and config errors as one-line messages with non-zero exits.
 */
import t from 'tap'
import { eventually, run, start as startCli, type Proc } from '../day2/procs.js'
import { testdir } from '../testdir.js'

/** The real CLI (dist/cli/main.js) as a child process; stdout lines awaited for 15 s by default. */
const start = (args: string[]): Proc => startCli(args, { waitMs: 15_000 })

t.test('help and usage errors', async t => {
  const main = await run(['--help'])
  t.equal(main.code, 0)
  t.match(main.stdout, /cloud[\s\S]*edge[\s\S]*token[\s\S]*status[\s\S]*demo/)
  for (const cmd of ['cloud', 'edge', 'token', 'status', 'demo']) {
    const r = await run([cmd, '--help'])
    t.equal(r.code, 0, `${cmd} --help exits 0`)
    t.match(r.stdout, /Usage: edgefabric/, `${cmd} --help prints usage`)
  }
  const unknown = await run(['frobnicate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command "frobnicate"/)
  const bad = await run(['cloud', '--heartbeat', 'fast', '--data-dir', testdir(t, {})])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--heartbeat/)
  const missing = await run(['edge', '--node', 'edge-1'])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /--hub: required/)
})

t.test('cloud + token + edge + status; a frozen edge is detected; graceful signals', async t => {
  const dir = testdir(t, {})
  const cloud = start(['cloud', '--listen', 'quic://127.0.0.1:0', '--listen', 'wss://127.0.0.1:0', '--data-dir', `${dir}/hub`,
    '--admin', '127.0.0.1:0', '--heartbeat', '400ms', '--log-level', 'warn'])
  t.teardown(() => { cloud.child.kill('SIGKILL') })
  const quicUrl = (await cloud.waitFor(/^listening (quic:\/\/\S+)/))[1] as string
  const wssUrl = (await cloud.waitFor(/^listening (wss:\/\/\S+)/))[1] as string
  const adminUrl = (await cloud.waitFor(/^admin (\S+)/))[1] as string
  await cloud.waitFor(/^ready$/)

  const tok = await run(['token', 'create', '--node', 'edge-1', '--data-dir', `${dir}/hub`])
  t.equal(tok.code, 0)
  const token = tok.stdout.trim()
  t.match(token, /^ef1\./)

  const edge = start(['edge', '--hub', quicUrl, '--node', 'edge-1', '--token', token, '--data-dir', `${dir}/edge-1`, '--admin', 'off',
    '--backoff-base', '50ms', '--backoff-cap', '300ms', '--log-level', 'error', '--label', 'zone=north'])
  t.teardown(() => { edge.child.kill('SIGKILL') })
  await edge.waitFor(/^connected quic:/)
  await cloud.waitFor(/^node edge-1 connected over quic/)

  const st = await run(['status', '--admin', adminUrl])
  t.equal(st.code, 0)
  t.match(st.stdout, /1 of 1 nodes connected/)
  t.match(st.stdout, /edge-1\s+connected\s+quic.*zone=north/)

  // Freeze the edge: the hub must notice on inbound silence within 3 × heartbeat (1.2 s).
  const frozenAt = Date.now()
  edge.child.kill('SIGSTOP')
  await cloud.waitFor(/^node edge-1 disconnected: no traffic/, 5000)
  const detectMs = Date.now() - frozenAt
  t.ok(detectMs <= 3 * 400 + 300, `frozen edge detected in ${detectMs} ms (heartbeat 400 ms)`)
  edge.child.kill('SIGCONT')
  await t.resolves(eventually(() => cloud.lines.filter(l => /^node edge-1 connected/.test(l)).length >= 2, 10_000), 'the thawed edge reconnects')

  // A second edge over wss with the same hub, then graceful hub shutdown.
  const tok2 = (await run(['token', 'create', '--node', 'edge-2', '--data-dir', `${dir}/hub`])).stdout.trim()
  const edge2 = start(['edge', '--hub', wssUrl, '--node', 'edge-2', '--token', tok2, '--data-dir', `${dir}/edge-2`, '--admin', 'off', '--log-level', 'error'])
  t.teardown(() => { edge2.child.kill('SIGKILL') })
  await edge2.waitFor(/^connected wss:/)

  cloud.child.kill('SIGINT')
  t.equal(await cloud.exit(15_000), 0, 'hub exits 0 on SIGINT')
  await edge.waitFor(/^disconnected: /)
  edge.child.kill('SIGTERM')
  edge2.child.kill('SIGTERM')
  t.equal(await edge.exit(15_000), 0, 'edge exits 0 on SIGTERM while reconnecting')
  t.equal(await edge2.exit(15_000), 0)
})

t.test('an edge refused for good prints one line and exits non-zero', async t => {
  const dir = testdir(t, {})
  const cloud = start(['cloud', '--listen', 'ws://127.0.0.1:0', '--data-dir', `${dir}/hub`, '--admin', 'off', '--log-level', 'silent'])
  t.teardown(() => { cloud.child.kill('SIGKILL') })
  const url = (await cloud.waitFor(/^listening (ws:\/\/\S+)/))[1] as string
  // a token from another hub: the signature does not verify
  const foreign = (await run(['token', 'create', '--node', 'edge-1', '--init', '--data-dir', `${dir}/other-hub`])).stdout.trim()
  const r = await run(['edge', '--hub', url, '--node', 'edge-1', '--token', foreign, '--data-dir', `${dir}/edge`, '--admin', 'off', '--log-level', 'silent'])
  t.equal(r.code, 3)
  const lines = r.stderr.trim().split('\n')
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], /join token is invalid.*EF_TOKEN_INVALID/)
  cloud.child.kill('SIGTERM')
  t.equal(await cloud.exit(15_000), 0)
})
