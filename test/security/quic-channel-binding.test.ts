/**
 * Issue 13 item 10 over quic://: "the session bound to the channel where the
 * transport allows it". The native engine exports the TLS secret of each QUIC
 * connection (quinn `export_keying_material`, RFC 9001 §4 / RFC 8446 §7.5), so
 * the edge signs it into its hello like over wss (src/transport/channel-binding.ts)
 * and the hub compares it with its own end's: a hello made for another
 * connection — what a relay terminating the edge's QUIC and opening its own
 * forwards — is refused with EF_CHANNEL_BINDING_MISMATCH. Before, quic://
 * connections had no binding at all and such a hello was admitted.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { edgefabricAvailable } from '../../src/transport/quic-engine.js'
import { counterValue, rawJoin } from './helpers.js'
import { testdir } from '../testdir.js'

const avail = edgefabricAvailable()

t.test('quic://: a hello bound to another QUIC connection is refused; its own connection is admitted', {
  skip: avail.ok ? false : `the native QUIC engine is unavailable here (${avail.reason}); the libp2p engine cannot export the TLS secret`
}, async t => {
  const root = testdir(t, {})
  const hub = await Hub.start({ listen: ['quic://127.0.0.1:0'], dataDir: join(root, 'hub'), admin: false })
  t.teardown(async () => await hub.close(100))
  const url = hub.urls[0] as string

  const first = await rawJoin(url, 'edge-a', hub.createToken('edge-a'))
  t.teardown(async () => await first.conn.close())
  const mine = first.conn.channelBinding?.()
  t.equal(mine?.byteLength, 32, 'the native engine offers a 32-byte exporter value')
  if (mine === undefined) return
  t.ok(hub.nodes().some(n => n.nodeId === 'edge-a'), 'a hello bound to its own connection is admitted')

  // The hello of another connection (the relay's other leg): the signature is valid, the binding is not this one's.
  const token = hub.createToken('edge-b')
  const refused = await rawJoin(url, 'edge-b', token, 10_000, mine).then(s => { void s.conn.close(); return 'welcome' }, (err: Error) => err.message)
  t.match(refused, /EF_CHANNEL_BINDING_MISMATCH/, 'refused as bound to another connection')
  t.ok(await counterValue(hub.registry, 'edgefabric_hub_handshake_refusals_total', { code: 'EF_CHANNEL_BINDING_MISMATCH' }) >= 1, 'and counted')

  // The token was not used by the refused hello: a real edge joins with it, both ends computing the same binding.
  const edge = await EdgeNode.start({ hub: url, nodeId: 'edge-b', token, dataDir: join(root, 'edge-b'), admin: false })
  t.teardown(async () => await edge.close())
  await edge.waitConnected(10_000)
  t.ok(hub.nodes().some(n => n.nodeId === 'edge-b' && n.status === 'connected'), 'the edge joins over quic with its own binding')
})

// The libp2p fallback engine (platforms without the native one) cannot export: its hello has no
// binding, and a native hub must still take it (the hub stays pinned by the edge; see authenticator.ts).
t.test('an edge on the libp2p engine (no binding) still joins a native-engine hub', {
  skip: avail.ok ? false : 'the native QUIC engine is unavailable here'
}, async t => {
  const root = testdir(t, {})
  const hub = await Hub.start({ listen: ['quic://127.0.0.1:0'], dataDir: join(root, 'hub'), admin: false })
  t.teardown(async () => await hub.close(100))
  const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
  const child = spawn(process.execPath, [bin, 'edge', '--hub', hub.urls[0] as string, '--node', 'edge-l', '--token', hub.createToken('edge-l'),
    '--data-dir', join(root, 'edge'), '--admin', 'off', '--dmi', 'off'], { stdio: 'ignore', env: { ...process.env, EDGEFABRIC_QUIC_ENGINE: 'libp2p' } })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const end = Date.now() + 20_000
  while (!hub.nodes().some(n => n.nodeId === 'edge-l' && n.status === 'connected') && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 50))
  t.ok(hub.nodes().some(n => n.nodeId === 'edge-l' && n.status === 'connected'), 'joined without a binding')
})
