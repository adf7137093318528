/**
 * `edgefabric_build_info{version,node_version,transport_quic,role}` = 1: which
 * build runs where (the Prometheus `*_build_info` convention), so a dashboard
 * can tell a fleet's versions apart and see where the native QUIC engine is
 * missing (`transport_quic="false"`: quic:// listeners/dials are unavailable).
 */
import { readFileSync } from 'node:fs'
import { Gauge, type Registry } from 'prom-client'

let cached: string | undefined

/** The package version (package.json next to src/ or dist/). */
export function packageVersion (): string {
  if (cached !== undefined) return cached
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    cached = 'unknown'
  }
  return cached
}

export function registerBuildInfo (registry: Registry, role: 'hub' | 'edge', transportQuic: boolean): void {
  const g = new Gauge({
    name: 'edgefabric_build_info',
    help: 'Build of this process (always 1): package version, Node.js version, native QUIC engine available, role',
    labelNames: ['version', 'node_version', 'transport_quic', 'role'] as const,
    registers: [registry]
  })
  g.set({ version: packageVersion(), node_version: process.versions.node, transport_quic: String(transportQuic), role }, 1)
}
