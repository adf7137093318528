/**
 * Loading the edgefabric QUIC engine (native/quic, a cdylib built from
 * Debian's quinn 0.9 crates) and the batched channel to it.
 *
 * Crossings (issue 18): every command of an event-loop turn is encoded into
 * one buffer and handed over with one `submit()` call from a setImmediate;
 * the engine hands back everything it has to report in one buffer per
 * threadsafe-function call. Both layouts are `[op u8][a u32][b u32][len u32]
 * [payload]`, little-endian (native/quic/src/engine.rs).
 */
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TransportUnavailableError, toError } from '../errors.js'

export interface Addon {
  init (onEvents: (batch: Buffer) => void): void
  setRef (on: number): void
  listen (params: Uint8Array, cert: Uint8Array, key: Uint8Array, resetKey: Uint8Array, ip: Uint8Array, port: number): number
  dial (req: number, params: Uint8Array, cert: Uint8Array, key: Uint8Array, ip: Uint8Array, port: number): void
  /** `parts`: the buffers C_WRITEV commands name by index (borrowed for the call only). */
  submit (commands: Uint8Array, parts?: Uint8Array[]): void
  rtt (conn: number): number
  remote (conn: number): string | undefined
  /** TLS exporter of an established connection (absent in prebuilts older than channel binding). */
  exporter? (conn: number, label: Uint8Array, length: number): Buffer | undefined
  /** quinn ConnectionStats as f64s in QUIC_STATS order (absent in prebuilts older than issue 18's grid work). */
  stats? (conn: number): Buffer | undefined
}

/** Field order of the engine's `stats()` (native/quic/src/engine.rs `stats`). */
export const QUIC_STATS = [
  'rttMs', 'cwnd', 'congestionEvents', 'lostPackets', 'lostBytes', 'sentPackets',
  'udpTxDatagrams', 'udpTxBytes', 'udpTxTransmits', 'udpRxDatagrams', 'udpRxBytes',
  'acksSent', 'acksReceived', 'streamFramesSent', 'streamFramesReceived',
  'maxDataSent', 'maxStreamDataSent', 'dataBlockedReceived', 'streamDataBlockedReceived', 'blockedSent'
] as const

export type QuicStats = Record<typeof QUIC_STATS[number], number>

/** Decode the engine's stats buffer; undefined when it is missing or not the expected length. */
export function decodeQuicStats (b: Buffer | undefined): QuicStats | undefined {
  if (b === undefined || b.byteLength !== QUIC_STATS.length * 8) return undefined
  const out: Partial<QuicStats> = {}
  QUIC_STATS.forEach((k, i) => { out[k] = b.readDoubleLE(i * 8) })
  return out as QuicStats
}

export const E_CONN_IN = 1
export const E_DIAL_OK = 2
export const E_DIAL_ERR = 3
export const E_STREAM_OPENED = 4
export const E_STREAM_OPEN_ERR = 5
export const E_STREAM_IN = 6
export const E_DATA = 7
export const E_FIN = 8
export const E_READ_ERR = 9
export const E_WRITTEN = 10
export const E_WRITE_ERR = 11
export const E_FINISHED = 12
export const E_CONN_CLOSED = 13
export const E_EP_CLOSED = 14

export const C_OPEN = 1
export const C_WRITE = 2
export const C_FINISH = 3
export const C_RESET = 4
export const C_READ = 5
export const C_STOP = 6
export const C_CLOSE = 7
export const C_EP_CLOSE = 8
/** A write whose bytes travel by reference: payload = u32 indices into submit()'s `parts`. */
export const C_WRITEV = 9

const HEAD = 13

/** The prebuilt shipped in the package for this platform, or the one named by EDGEFABRIC_QUIC_ENGINE_PATH. */
export function addonPath (): string {
  const override = process.env.EDGEFABRIC_QUIC_ENGINE_PATH
  if (override !== undefined && override !== '') return resolve(override)
  // The package root holds prebuilds/: two levels up from src/transport/ and
  // dist/transport/, three from dist-bench/src/transport/.
  const rel = join('prebuilds', `${process.platform}-${process.arch}`, 'edgefabric-quic.node')
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let up = 0; up < 4; up++) {
    dir = dirname(dir)
    if (existsSync(join(dir, rel))) return join(dir, rel)
  }
  return join(dirname(dirname(fileURLToPath(import.meta.url))), rel)
}

export type EventHandler = (op: number, a: number, b: number, payload: Buffer) => void

/** The loaded engine with its command batcher. One per process. */
export class EngineChannel {
  readonly addon: Addon
  readonly #parts: Buffer[] = []
  #bytes = 0
  /** Write data of this turn, passed next to the command buffer instead of copied into it. */
  #writeParts: Uint8Array[] = []
  #scheduled = false
  #refs = 0
  #handler: EventHandler = () => {}
  /** Batches received from the engine (for the crossing benchmark). */
  batchesIn = 0
  /** Submit calls made to the engine. */
  batchesOut = 0

  constructor (addon: Addon) {
    this.addon = addon
    addon.init(batch => this.#dispatch(batch))
  }

  onEvent (handler: EventHandler): void { this.#handler = handler }

  /** Queue one command; all commands of this turn go in one submit(). */
  command (op: number, a: number, b = 0, payload?: Uint8Array): void {
    const head = Buffer.allocUnsafe(HEAD)
    head[0] = op
    head.writeUInt32LE(a >>> 0, 1)
    head.writeUInt32LE(b >>> 0, 5)
    head.writeUInt32LE(payload?.byteLength ?? 0, 9)
    this.#parts.push(head)
    this.#bytes += HEAD
    if (payload !== undefined && payload.byteLength > 0) {
      this.#parts.push(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength))
      this.#bytes += payload.byteLength
    }
    this.#schedule()
  }

  /**
   * Queue a write of `parts` (in order) to stream `sid` without copying them:
   * the engine gathers them straight from these buffers during the submit
   * (issue 18: CPU per byte; the bytes used to be copied into the command
   * buffer, then again on the engine side). The caller must not modify them
   * before this turn's submit.
   */
  commandv (op: number, sid: number, parts: readonly Uint8Array[]): void {
    const head = Buffer.allocUnsafe(HEAD + 4 * parts.length)
    head[0] = op
    head.writeUInt32LE(sid >>> 0, 1)
    head.writeUInt32LE(0, 5)
    head.writeUInt32LE(4 * parts.length, 9)
    for (let i = 0; i < parts.length; i++) {
      head.writeUInt32LE(this.#writeParts.length, HEAD + 4 * i)
      this.#writeParts.push(parts[i] as Uint8Array)
    }
    this.#parts.push(head)
    this.#bytes += head.byteLength
    this.#schedule()
  }

  #schedule (): void {
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.flush())
    }
  }

  flush (): void {
    this.#scheduled = false
    if (this.#parts.length === 0) return
    const buf = Buffer.concat(this.#parts, this.#bytes)
    const refs = this.#writeParts
    this.#parts.length = 0
    this.#bytes = 0
    this.#writeParts = []
    this.batchesOut++
    if (refs.length > 0) this.addon.submit(buf, refs)
    else this.addon.submit(buf)
  }

  /** Count of open things that should keep the process alive. */
  ref (): void {
    if (this.#refs++ === 0) this.addon.setRef(1)
  }

  unref (): void {
    if (this.#refs > 0 && --this.#refs === 0) this.addon.setRef(0)
  }

  #dispatch (batch: Buffer): void {
    this.batchesIn++
    let off = 0
    while (off + HEAD <= batch.byteLength) {
      const op = batch[off] as number
      const a = batch.readUInt32LE(off + 1)
      const b = batch.readUInt32LE(off + 5)
      const len = batch.readUInt32LE(off + 9)
      const payload = batch.subarray(off + HEAD, off + HEAD + len)
      off += HEAD + len
      try {
        this.#handler(op, a, b, payload)
      } catch (err) {
        // A handler bug must not lose the rest of the batch; surface it without crashing the engine.
        queueMicrotask(() => { throw toError(err) })
      }
    }
  }
}

let channel: { value?: EngineChannel, error?: Error } | undefined

/** Load the engine once; a failure is a TransportUnavailableError with the reason. */
export function engineChannel (): EngineChannel {
  if (channel === undefined) {
    const path = addonPath()
    try {
      if (!existsSync(path)) throw new Error(`no prebuilt engine at ${path} (platform ${process.platform}-${process.arch})`)
      const addon = createRequire(import.meta.url)(path) as Partial<Addon>
      for (const f of ['init', 'setRef', 'listen', 'dial', 'submit', 'rtt', 'remote'] as const) {
        if (typeof addon[f] !== 'function') throw new Error(`${path} does not export ${f}()`)
      }
      channel = { value: new EngineChannel(addon as Addon) }
    } catch (err) {
      channel = { error: new TransportUnavailableError('quic', `edgefabric QUIC engine unavailable: ${toError(err).message}`, { cause: err }) }
    }
  }
  if (channel.error !== undefined) throw channel.error
  return channel.value as EngineChannel
}
