/**
 * The envelope (DESIGN.md §2): header / router / content, as KubeEdge's
 * beehive `model.Message`. This is the public, readable shape; the wire form
 * (src/codec/codec.ts) is compact.
 */
import { randomUUID } from 'node:crypto'

/**
 * Priority classes. Each maps to its own logical stream on transports that
 * have streams (DESIGN.md §3), so bulk traffic never blocks control traffic.
 * Scheduling order at the sender: control > high > normal > bulk.
 */
export const PRIORITIES = ['control', 'high', 'normal', 'bulk'] as const
export type Priority = typeof PRIORITIES[number]

/** Well-known operations; applications may define others. */
export const OPERATIONS = ['insert', 'update', 'patch', 'delete', 'query', 'response', 'error', 'upload', 'publish', 'keepalive'] as const
export type Operation = typeof OPERATIONS[number] | (string & {})

export interface MessageHeader {
  /** Unique message id (a UUID by default). */
  id: string
  /** For a response/error: the id of the request it answers. */
  parentId?: string
  /** Creation time, ms since the epoch. */
  timestamp: number
  /** Version of the resource this message carries, for supersession (DESIGN.md §5). */
  resourceVersion?: string
  /** True when the sender waits for a response (request/response). */
  sync?: boolean
  /** Time to live in ms from `timestamp`; expired messages are not delivered. */
  ttl?: number
  /** Priority class. @default 'normal' */
  priority?: Priority
}

export interface MessageRouter {
  /** Sending module (or node). */
  source: string
  /** Receiving module or node, when not routed by group alone. */
  destination?: string
  /** Module group that handles the message. */
  group: string
  /** What to do: insert, update, delete, query, response, ... */
  operation: Operation
  /** `{namespace}/{type}/{name}` as in KubeEdge. */
  resource: string
}

export interface Envelope<T = unknown> {
  header: MessageHeader
  router: MessageRouter
  content: T
}

export interface NewMessageInit<T = unknown> {
  source: string
  group: string
  operation: Operation
  resource: string
  destination?: string
  content?: T
  id?: string
  parentId?: string
  timestamp?: number
  resourceVersion?: string
  sync?: boolean
  ttl?: number
  priority?: Priority
}

/** Build a new envelope; only the router fields are required. */
export function newMessage<T = unknown> (init: NewMessageInit<T>): Envelope<T> {
  const header: MessageHeader = { id: init.id ?? randomUUID(), timestamp: init.timestamp ?? Date.now() }
  if (init.parentId !== undefined) header.parentId = init.parentId
  if (init.resourceVersion !== undefined) header.resourceVersion = init.resourceVersion
  if (init.sync !== undefined) header.sync = init.sync
  if (init.ttl !== undefined) header.ttl = init.ttl
  if (init.priority !== undefined) header.priority = init.priority
  const router: MessageRouter = { source: init.source, group: init.group, operation: init.operation, resource: init.resource }
  if (init.destination !== undefined) router.destination = init.destination
  return { header, router, content: init.content as T }
}

/**
 * A response to `request`: `parentId` = request id, operation `response`,
 * source/destination swapped, same group and resource, same priority.
 */
export function newResponse<T = unknown> (request: Envelope, content: T, source = request.router.destination ?? request.router.group): Envelope<T> {
  return newMessage<T>({
    source,
    destination: request.router.source,
    group: request.router.group,
    operation: 'response',
    resource: request.router.resource,
    parentId: request.header.id,
    content,
    ...(request.header.priority !== undefined ? { priority: request.header.priority } : {})
  })
}

/** The content carried by an `error` response. */
export interface ErrorContent {
  code: string
  message: string
}

/** An error response to `request` (operation `error`), carrying a stable code. */
export function newErrorResponse (request: Envelope, code: string, message: string, source?: string): Envelope<ErrorContent> {
  const env = newResponse<ErrorContent>(request, { code, message }, source)
  env.router.operation = 'error'
  return env
}

/** True when the envelope's TTL has passed at `now`. */
export function isExpired (env: Envelope, now = Date.now()): boolean {
  const ttl = env.header.ttl
  return ttl !== undefined && ttl > 0 && env.header.timestamp + ttl <= now
}
