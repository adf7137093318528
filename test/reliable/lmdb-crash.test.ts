/**
 * Crash durability of LmdbStore: a child process appends (many concurrent
 * appenders, so group commit is in play) and prints every acknowledged seq;
 * the parent SIGKILLs it mid-stream, then reopens the directory: every seq the
 * child printed must be there with its id. Two kills per directory, so the
 * second round also runs on a store recovered from a crash.
 *
 * SIGKILL proves process-crash durability only (both modes promise that).
 * Power-loss durability of `sync` rests on the fsync it keeps on
 * (overlappingSync: false, noSync: false; see lmdb-store.ts) and cannot be
 * tested without cutting power.
 *
 * Needs `npm run build` (the fixture imports dist/).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { testdir } from '../testdir.js'

const fixture = fileURLToPath(new URL('../fixtures/lmdb-crash-writer.mjs', import.meta.url))
const built = existsSync(fileURLToPath(new URL('../../dist/reliable/lmdb-store.js', import.meta.url)))

interface Round { acked: Map<number, string>, refused: number, sawDone: boolean }

/** Run the writer until `killAfter` acknowledgements, then SIGKILL it. */
function round (dir: string, durability: string, prefix: string, killAfter: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture, dir, durability, '1000000', '64', prefix], { stdio: ['ignore', 'pipe', 'pipe'] })
    const acked = new Map<number, string>()
    let refused = 0
    let sawDone = false
    let buf = ''
    let stderr = ''
    let killed = false
    child.on('error', reject)
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (line === 'ready') continue
        if (line === 'done') { sawDone = true; continue }
        const [a, b] = line.split(' ')
        if (a === 'refused') { refused++; continue }
        acked.set(Number(a), b as string)
      }
      if (!killed && acked.size >= killAfter) {
        killed = true
        child.kill('SIGKILL')
      }
    })
    child.on('exit', (code, signal) => {
      // Lines completed before the kill count; a partial last line does not.
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code ?? signal}: ${stderr}`))
      else resolve({ acked, refused, sawDone })
    })
  })
}

for (const durability of ['sync', 'relaxed'] as const) {
  t.test(`${durability}: every acknowledged append survives SIGKILL`, { skip: built ? false : 'run `npm run build` first' }, async t => {
    const dir = testdir(t)
    const all = new Map<number, string>()
    for (const [i, killAfter] of [1500 + Math.floor(Math.random() * 1500), 700 + Math.floor(Math.random() * 700)].entries()) {
      const r = await round(dir, durability, `r${i}`, killAfter)
      t.equal(r.refused, 0)
      t.notOk(r.sawDone, 'killed mid-stream')
      const reused = [...r.acked.keys()].filter(seq => all.has(seq))
      t.same(reused, [], 'a seq is never handed out twice, even across a crash')
      for (const [seq, id] of r.acked) all.set(seq, id)
      const s = await LmdbStore.open(dir, { durability })
      const present = new Map(s.pending('edge-1', 0, Infinity).map(r => [r.seq, r.id]))
      const missing = [...all].filter(([seq, id]) => present.get(seq) !== id)
      t.same(missing, [], `round ${i}: all ${all.size} acknowledged appends are present (${present.size} records on disk)`)
      const stats = s.outboxStats('edge-1')
      t.ok(stats.lastSeq >= Math.max(...all.keys()), 'lastSeq covers every acknowledged seq')
      t.equal(stats.count, present.size, 'counters consistent with the records after the crash')
      await s.close()
    }
  })
}
