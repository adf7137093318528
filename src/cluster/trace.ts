/**
 * Diagnostics for chaos runs: with EF_CLUSTER_TRACE=<file>, cluster events (PubAcks,
 * purges, outbox reader restarts) are appended to <file> as JSON lines, from every hub
 * process of a run (they inherit the environment). Off (one env lookup) otherwise.
 */
import { appendFileSync } from 'node:fs'

const file = process.env.EF_CLUSTER_TRACE

/** True when tracing: hot paths test this before building the event object. */
export const tracing = file !== undefined && file !== ''

export function trace (o: Record<string, unknown>): void {
  if (tracing) appendFileSync(file as string, JSON.stringify({ t: Date.now(), pid: process.pid, ...o }) + '\n')
}
