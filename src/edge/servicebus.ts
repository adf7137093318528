/**
 * ServiceBus (DESIGN.md §7): the cloud (or a local module) calls an HTTP
 * endpoint of an app on the edge's loopback through the module bus, and edge
 * apps post upstream through a local HTTP endpoint (servicebus-upstream.ts).
 *
 * Request envelope: group 'servicebus' (or destination 'servicebus'),
 * operation 'http' or 'request', content = LocalHttpRequest
 * { method, path, headers?, body?: string | bytes, port }.
 * Response envelope: operation 'response', content { status, headers, body: bytes };
 * or operation 'error', content { code: 'EF_SERVICEBUS', message, reason }.
 */
import type { Envelope } from '../codec/envelope.js'
import { InvalidOptionError, ServiceBusError, toError } from '../errors.js'
import { intOption } from '../util/options.js'
import type { ModuleBus, ModuleHandle } from './bus.js'
import { noopLogger, type BusLogger, type MailboxOptions } from './bus-types.js'
import { callLocalHttp, DEFAULT_SERVICEBUS_MAX_BODY, DEFAULT_SERVICEBUS_TIMEOUT_MS, type LocalHttpRequest } from './servicebus-http.js'

export interface ServiceBusOptions {
  /** Ports of 127.0.0.1 the ServiceBus may call. */
  allowedPorts: readonly number[]
  /** Per call. @default 30000 */
  timeoutMs?: number
  /** Largest response body. @default 8 MiB */
  maxBodyBytes?: number
  /** HTTP calls in flight at once; further requests wait in the mailbox (its overflow policy applies). @default 16 */
  concurrency?: number
  /** @default 'servicebus' */
  name?: string
  /** @default 'servicebus' */
  group?: string
  mailbox?: MailboxOptions
  logger?: BusLogger
}

export interface ServiceBus {
  readonly handle: ModuleHandle
  /** Stop taking requests, wait for calls in flight, unregister the module. */
  stop (): Promise<void>
}

export const SERVICEBUS_OPERATIONS: readonly string[] = ['http', 'request']

export function registerServiceBus (bus: ModuleBus, options: ServiceBusOptions): ServiceBus {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'must be an object')
  if (!Array.isArray(options.allowedPorts) || !options.allowedPorts.every(p => Number.isInteger(p) && p >= 1 && p <= 65535)) {
    throw new InvalidOptionError('allowedPorts', 'must be an array of port numbers 1-65535')
  }
  const callOptions = {
    allowedPorts: [...options.allowedPorts],
    timeoutMs: intOption('timeoutMs', options.timeoutMs, DEFAULT_SERVICEBUS_TIMEOUT_MS, 1),
    maxBodyBytes: intOption('maxBodyBytes', options.maxBodyBytes, DEFAULT_SERVICEBUS_MAX_BODY, 0)
  }
  const logger = options.logger ?? noopLogger
  const concurrency = intOption('concurrency', options.concurrency, 16, 1, 10_000)
  const handle = bus.register({
    name: options.name ?? 'servicebus',
    group: options.group ?? 'servicebus',
    ...(options.mailbox !== undefined ? { mailbox: options.mailbox } : {})
  })

  const inFlight = new Set<Promise<void>>()

  const serve = async (env: Envelope): Promise<void> => {
    const op = env.router.operation
    if (op === 'response' || op === 'error') return // stray answer; nothing to do
    try {
      if (!SERVICEBUS_OPERATIONS.includes(op)) {
        throw new ServiceBusError('bad-operation', `servicebus serves operations ${SERVICEBUS_OPERATIONS.join(', ')}, not "${op}"`)
      }
      const res = await callLocalHttp(env.content as LocalHttpRequest, callOptions)
      await handle.respond(env, { status: res.status, headers: res.headers, body: res.body })
    } catch (err) {
      if (err instanceof ServiceBusError) {
        await handle.respondError(env, err.code, err.message, { reason: err.reason })
      } else {
        throw err // respond() itself failed (upstream down): nothing more to send
      }
    }
  }

  const loop = async (): Promise<void> => {
    // Pull one request at a time and only while below the concurrency bound,
    // so excess requests stay in the bounded mailbox and push back on senders.
    for await (const env of handle) {
      while (inFlight.size >= concurrency) await Promise.race(inFlight)
      const p: Promise<void> = serve(env)
        .catch(err => {
          handle.handlerErrors++
          logger.warn({ module: handle.name, id: env.header.id, err: toError(err) }, 'servicebus could not answer a request')
        })
        .finally(() => { inFlight.delete(p) })
      inFlight.add(p)
    }
  }
  const running = loop().catch(() => {})

  return {
    handle,
    async stop () {
      handle.unregister()
      await running
      await Promise.allSettled([...inFlight])
    }
  }
}

export {
  callLocalHttp, checkLocalHttpRequest,
  type CallLocalHttpOptions, type LocalHttpRequest, type LocalHttpResponse
} from './servicebus-http.js'
export { startUpstreamEndpoint, type UpstreamEndpoint, type UpstreamEndpointOptions } from './servicebus-upstream.js'
