/**
 * The embedded broker's connected MQTT clients, for the edge console
 * (GET /api/mqtt-clients) and the client/subscription gauges (metrics.ts).
 * One entry per connected client, added when aedes registers it and removed
 * when it disconnects, so the table is bounded by the live connections the
 * broker already holds; the page size is capped by the caller.
 */
import type { Client } from 'aedes'
import type { BrokerGaugeSource, MqttListener } from './metrics.js'

export interface MqttClientView {
  clientId: string
  /** The principal the client logged in as (the mapper's or device's username, `anonymous` for the node's mapper without credentials). */
  username: string
  kind: string
  remoteAddress: string | undefined
  listener: MqttListener
  connectedAt: number
  /** Persistent session (clean=false) or not. */
  persistent: boolean
  subscriptions: number
  /** PUBLISH packets accepted from the client. */
  messagesIn: number
  /** Messages forwarded to the client. */
  messagesOut: number
}

interface Entry { view: Omit<MqttClientView, 'subscriptions'>, client: Client }

export class BrokerClients implements BrokerGaugeSource {
  readonly #live = new Map<Client, Entry>()

  add (client: Client, v: { username: string, kind: string, remoteAddress: string | undefined, listener: MqttListener, connectedAt: number }): void {
    this.#live.set(client, { client, view: { clientId: client.id, ...v, persistent: !client.clean, messagesIn: 0, messagesOut: 0 } })
  }

  remove (client: Client): void { this.#live.delete(client) }

  countIn (client: Client): void { const e = this.#live.get(client); if (e !== undefined) e.view.messagesIn++ }
  countOut (client: Client): void { const e = this.#live.get(client); if (e !== undefined) e.view.messagesOut++ }

  get size (): number { return this.#live.size }

  clientsByListener (): Record<MqttListener, number> {
    const out = { tcp: 0, tls: 0, ws: 0 }
    for (const e of this.#live.values()) out[e.view.listener]++
    return out
  }

  subscriptions (): number {
    let n = 0
    for (const e of this.#live.values()) n += subCount(e.client)
    return n
  }

  /** Oldest connection first; `q` matches client id or username (substring, case-insensitive). */
  page (offset: number, limit: number, q = ''): { total: number, items: MqttClientView[] } {
    const needle = q.toLowerCase()
    const items: MqttClientView[] = []
    let total = 0
    for (const e of this.#live.values()) {
      if (needle !== '' && !e.view.clientId.toLowerCase().includes(needle) && !e.view.username.toLowerCase().includes(needle)) continue
      if (total >= offset && items.length < limit) items.push({ ...e.view, subscriptions: subCount(e.client) })
      total++
    }
    return { total, items }
  }
}

// aedes keeps a client's live subscriptions (restored ones of a persistent session included) on the client.
function subCount (c: Client): number {
  return Object.keys((c as unknown as { subscriptions?: object }).subscriptions ?? {}).length
}
