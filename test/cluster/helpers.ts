/**
 * Shared set-up of the cluster tests: a NATS cluster in the test dir and
 * hubs in cluster mode on real loopback sockets.
 */
import type { Test } from 'tap'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { ClusterConnection, resolveClusterOptions } from '../../src/cluster/connection.js'
import { Hub } from '../../src/hub/hub.js'
import { nullLogger } from '../../src/ops/logger.js'
import type { HubOptions } from '../../src/hub/types.js'
import { fileURLToPath } from 'node:url'
import { NatsCluster, natsServerPath } from './nats-cluster.js'
import { Restartable, freePort } from '../reliable/chaos-procs.js'
import { testdir } from '../testdir.js'

const dirs = new WeakMap<Test, string>()

/** A fresh sub-directory of the test's dir (testdir(t) wipes the dir when called again). */
export function subdir (t: Test, name: string): string {
  let base = dirs.get(t)
  if (base === undefined) { base = testdir(t, {}); dirs.set(t, base) }
  const d = join(base, name)
  mkdirSync(d, { recursive: true })
  return d
}

export const SECRET = 'test-cluster-secret-0123456789'

/** Skip (with the reason) when nats-server is not installed; CI installs Debian's `nats-server`. */
export function needNats (t: Test): boolean {
  if (natsServerPath() !== undefined) return true
  t.pass('SKIPPED: nats-server is not installed (Debian package nats-server)')
  return false
}

export async function startNats (t: Test, size = 3): Promise<NatsCluster> {
  const c = await NatsCluster.start(subdir(t, 'nats'), size)
  t.teardown(async () => { await c.stop() })
  return c
}

export interface ClusterConnections {
  /** A new connection under this cluster name (its own streams and buckets). */
  open: (name: string, servers?: string[]) => Promise<ClusterConnection>
  /** Every connection opened so far, in order. */
  readonly all: readonly ClusterConnection[]
}

/**
 * Cluster connections for one test, all closed when it ends (registered after startNats, so
 * before the servers stop). `defaults`: the cluster options every connection shares.
 */
export function clusterConnections (t: Test, servers: string[], defaults: { replicas: number, timeoutMs?: number }): ClusterConnections {
  const all: ClusterConnection[] = []
  t.teardown(async () => { for (const c of all) await c.close() })
  return {
    all,
    open: async (name, s = servers) => {
      const c = await ClusterConnection.open(resolveClusterOptions({ servers: s, name, ...defaults }), nullLogger)
      all.push(c)
      return c
    }
  }
}

/**
 * For the shared store suites: a cluster name per (suite test, name), so every test has its own
 * streams and reopening a name in the same test reaches the same data, as a restarted hub would.
 */
export function perTestName (prefix: string): (t: Test, name: string) => string {
  const ids = new WeakMap<Test, number>()
  let tests = 0
  return (t, name) => {
    let id = ids.get(t)
    if (id === undefined) { id = ++tests; ids.set(t, id) }
    return `${prefix}${id}-${name}`
  }
}

export async function startClusterHub (t: Test, nats: NatsCluster, name: string, listen: string[], extra: Partial<HubOptions> = {}): Promise<Hub> {
  const hub = await Hub.start({
    listen,
    dataDir: subdir(t, name),
    admin: false,
    heartbeatMs: 1000,
    cluster: { servers: nats.urls, name: 'test', identitySecret: SECRET, hubName: name, replicas: Math.min(3, nats.servers.length) },
    ...extra
  })
  t.teardown(async () => { await hub.close(200) })
  return hub
}

export async function until (what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

const HUB_FIXTURE = fileURLToPath(new URL('./fixtures/cluster-hub.mjs', import.meta.url))

/**
 * Cluster hubs as restartable child processes (fixtures/cluster-hub.mjs, which imports dist/), each
 * listening on wss and quic at fixed free ports (so a restart comes back at the same URLs), started
 * one at a time: the first hub's identity becomes the cluster's.
 */
export async function startHubProcesses (t: Test, nats: NatsCluster, names: string[]): Promise<Array<{ proc: Restartable, wss: string, quic: string }>> {
  const hubs: Array<{ proc: Restartable, wss: string, quic: string }> = []
  for (const name of names) {
    const wss = `wss://127.0.0.1:${await freePort('tcp')}`
    const quic = `quic://127.0.0.1:${await freePort('udp')}`
    const cfg = { listen: [wss, quic], dataDir: subdir(t, name), servers: nats.urls, name: 'test', hubName: name, secret: SECRET }
    const proc = new Restartable(name, HUB_FIXTURE, () => [JSON.stringify(cfg)])
    t.teardown(async () => { await proc.kill() })
    const ready = proc.waitFor(m => m.type === 'ready', 60_000)
    proc.start()
    await ready
    hubs.push({ proc, wss, quic })
  }
  return hubs
}
