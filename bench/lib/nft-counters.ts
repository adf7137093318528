/**
 * On-the-wire byte counters for loopback traffic to and from one port, with
 * nftables (root only). Counters sit on the `output` hook, which every
 * locally generated packet crosses exactly once — also on `lo`, where
 * per-interface counters cannot tell one flow from another. They count the
 * whole IP packet (IP + TCP/UDP header + QUIC/TLS/WebSocket framing +
 * payload); a real link would add its own framing (Ethernet: 14-byte
 * header + 4-byte FCS, plus preamble and gap on the wire) per packet, which
 * is why packets are counted too.
 *
 * Without nft (not installed, not root) create() returns an explanation
 * instead, and the bench falls back to the transports' own counters.
 */
import { execFileSync } from 'node:child_process'

export interface FlowCount { packets: number, bytes: number }
export interface PortCounts { up: FlowCount, down: FlowCount }

/** Per process: two bench runs at once (one outside the lock) must not delete each other's table. */
const TABLE = `efbench_sessions_${process.pid}`

function nft (args: string[], input?: string): string {
  return execFileSync('nft', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 })
}

export class NftCounters {
  readonly port: number
  readonly proto: 'tcp' | 'udp'

  private constructor (proto: 'tcp' | 'udp', port: number) {
    this.proto = proto
    this.port = port
  }

  /** Install counters for `proto` traffic to (up) and from (down) `port`. */
  static create (proto: 'tcp' | 'udp', port: number): NftCounters | { unavailable: string } {
    if (!Number.isInteger(port) || port <= 0 || port > 65535) return { unavailable: `bad port ${port}` }
    try {
      try { nft(['delete', 'table', 'inet', TABLE]) } catch { /* not there: fine */ }
      nft(['-f', '-'], [
        `table inet ${TABLE} {`,
        '  chain out {',
        '    type filter hook output priority 0; policy accept;',
        `    ${proto} dport ${port} counter comment "up"`,
        `    ${proto} sport ${port} counter comment "down"`,
        '  }',
        '}',
        ''
      ].join('\n'))
      const c = new NftCounters(proto, port)
      c.read() // proves the table is readable
      return c
    } catch (err) {
      const e = err as { stderr?: string, message?: string, code?: string }
      return { unavailable: e.code === 'ENOENT' ? 'nft is not installed' : (e.stderr?.trim() || e.message || String(err)).split('\n')[0] as string }
    }
  }

  /** Counters now, or undefined if the table vanished (someone flushed the ruleset). */
  tryRead (): PortCounts | undefined {
    try {
      return this.read()
    } catch {
      return undefined
    }
  }

  read (): PortCounts {
    const out = JSON.parse(nft(['-j', 'list', 'table', 'inet', TABLE])) as { nftables: Array<Record<string, unknown>> }
    const counts: PortCounts = { up: { packets: 0, bytes: 0 }, down: { packets: 0, bytes: 0 } }
    for (const item of out.nftables) {
      const rule = item.rule as { comment?: string, expr?: Array<Record<string, unknown>> } | undefined
      if (rule === undefined || (rule.comment !== 'up' && rule.comment !== 'down')) continue
      for (const e of rule.expr ?? []) {
        const c = e.counter as FlowCount | undefined
        if (c !== undefined) counts[rule.comment] = { packets: c.packets, bytes: c.bytes }
      }
    }
    return counts
  }

  destroy (): void {
    try { nft(['delete', 'table', 'inet', TABLE]) } catch { /* already gone */ }
  }
}

export function diffCounts (a: PortCounts, b: PortCounts): PortCounts {
  return {
    up: { packets: b.up.packets - a.up.packets, bytes: b.up.bytes - a.up.bytes },
    down: { packets: b.down.packets - a.down.packets, bytes: b.down.bytes - a.down.bytes }
  }
}
