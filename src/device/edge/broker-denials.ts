/**
 * Counting and rate-limited logging of the embedded broker's refusals
 * (CONNECT, publish and subscribe ACL; issue 13 item 12, issue 14 item 6).
 * Every refusal is counted; a looping client must not flood the log, so a
 * line is written once per source (CONNECT: a flood's client ids are fresh
 * each time) or client, and action, per minute, and at most
 * LOG_LINES_PER_ACTION lines per action and minute overall, with the count
 * of the left-out lines logged once the minute is over.
 */
import type { Client } from 'aedes'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../ops/logger.js'
import type { DeviceMetrics, MqttDenialReason } from './metrics.js'

const LOG_EVERY_MS = 60_000
const LOG_LINES_PER_ACTION = 50
/** Bound on the per-source/client memory of the last line. */
const MAX_KEYS = 10_000

export class DenialLog {
  readonly #lastLog = new Map<string, number>()
  readonly #perAction = new Map<string, { since: number, lines: number, suppressed: number }>()
  readonly #o: { metrics: DeviceMetrics, clock: Clock, logger: Logger, sourceOf: (conn: object) => string | undefined }

  constructor (o: { metrics: DeviceMetrics, clock: Clock, logger: Logger, sourceOf: (conn: object) => string | undefined }) { this.#o = o }

  deny (action: string, reason: MqttDenialReason, client: Client | null, detail: object): void {
    const o = this.#o
    o.metrics.denials.inc({ action })
    o.metrics.mqttDenials.inc({ reason })
    const who = action === 'connect' ? o.sourceOf(client?.conn as object) ?? client?.id : client?.id ?? o.sourceOf(client?.conn as object)
    const key = `${who ?? ''}\u0000${action}`
    const now = o.clock.now()
    const lastLog = this.#lastLog
    if ((lastLog.get(key) ?? -Infinity) + LOG_EVERY_MS > now) return
    if (lastLog.size >= MAX_KEYS) lastLog.delete(lastLog.keys().next().value as string)
    lastLog.set(key, now)
    const b = this.#perAction.get(action) ?? { since: now, lines: 0, suppressed: 0 }
    if (now - b.since >= LOG_EVERY_MS) {
      if (b.suppressed > 0) o.logger.warn({ action, suppressed: b.suppressed }, 'device broker denials not logged in the last minute')
      b.since = now; b.lines = 0; b.suppressed = 0
    }
    this.#perAction.set(action, b)
    if (b.lines >= LOG_LINES_PER_ACTION) { b.suppressed++; return }
    b.lines++
    o.logger.warn({ action, clientId: client?.id, ...detail }, 'device broker denied')
  }

  /** A client went away: its publish refusals may be logged again at once under a new session. */
  forgetPublish (clientId: string): void { this.#lastLog.delete(`${clientId}\u0000publish`) }
}
