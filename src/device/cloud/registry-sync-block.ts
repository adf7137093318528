/**
 * Why a node's devices do not sync (issue 12, "Nothing is lost without a
 * trace"): a device update for an edge started without a device broker used
 * to vanish — syncedRevision stayed 0 and nothing was logged at the hub. The
 * hub now tells the registry at every session start whether the edge stated
 * the `devices` capability; while it did not, views of the node's devices
 * carry `syncBlocked`, a counter rises and a warning is logged. The device
 * messages themselves stay in the node's reliable lane (the edge stores them
 * as resources) and apply once it runs with devices (edgeSeq resync).
 */
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../ops/logger.js'
import type { DeviceMetrics } from './registry-metrics.js'
import type { DeviceView } from './registry-types.js'

export class NodeSyncBlocks {
  /** Nodes whose edge stated no `devices` capability at its last session start, with when. */
  readonly #off = new Map<string, number>()
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #metrics: DeviceMetrics

  constructor (clock: Clock, logger: Logger, metrics: DeviceMetrics) {
    this.#clock = clock
    this.#logger = logger
    this.#metrics = metrics
  }

  /**
   * A node's session started; `bound` devices are bound to it. True when the node was blocked
   * and no longer is: the caller resends it full snapshots (what it got meanwhile was stored as
   * plain resources, not applied).
   */
  note (nodeId: string, enabled: boolean, bound: number): boolean {
    if (enabled) return this.#off.delete(nodeId) && bound > 0
    this.#off.set(nodeId, this.#clock.now())
    if (bound === 0) return false
    this.#metrics.syncBlocked.inc({ reason: 'edge_devices_disabled' })
    this.#logger.warn({ nodeId, devices: bound }, 'node has bound devices but its edge runs without a device broker: they cannot sync (start the edge with --mqtt-mode)')
    return false
  }

  /**
   * note(), then what to resend: false for nothing, undefined for every bound device (a block was
   * lifted), or the bound devices the node never confirmed (syncedRevision 0 — e.g. it ran without
   * devices before a hub restart, so no block was remembered).
   */
  resyncAfterNote (nodeId: string, enabled: boolean, ids: ReadonlySet<string> | undefined, synced: (id: string) => number | undefined): Array<{ namespace: string, name: string }> | undefined | false {
    const unblocked = this.note(nodeId, enabled, ids?.size ?? 0)
    if (!enabled || ids === undefined) return false
    if (unblocked) return undefined
    const never = [...ids].filter(id => synced(id) === 0)
    if (never.length === 0) return false
    return never.map(id => { const [namespace, name] = id.split('/') as [string, string]; return { namespace, name } })
  }

  /** The view with `syncBlocked` set while its node cannot sync. */
  apply (v: DeviceView): DeviceView {
    const since = v.nodeId === undefined ? undefined : this.#off.get(v.nodeId)
    if (since === undefined) return v
    return { ...v, syncBlocked: { code: 'EF_EDGE_DEVICES_DISABLED', reason: `edge ${v.nodeId as string} runs without a device broker (devices disabled), so it cannot apply or report this device`, since } }
  }
}
