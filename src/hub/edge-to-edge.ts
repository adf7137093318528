/**
 * Edge-to-edge permission (issue 13 item 5): an allow-list naming source
 * node, destination node and the module (or service) reached on the
 * destination; deny by default.
 *
 * Before, `edgeToEdge: true` (CLI `--edge-to-edge`) let any edge reach every
 * module of every other edge, including its ServiceBus and so the HTTP apps on
 * its loopback. Now each rule is `FROM->TO:MODULE` (`*` matches any one part),
 * e.g. `sensor-1->gateway:alerts`, `*->gateway:alerts`, `ops->*:servicebus`.
 *
 * What "the module reached" means follows the edge's module bus
 * (src/edge/bus.ts): a message goes to the module its destination names if
 * that module exists there, otherwise to every module of its `router.group`.
 * The hub cannot see which modules a node has, so BOTH names must be allowed:
 * the destination module (`node:b/<module>`) and the group. Otherwise
 * `node:b/alerts` with group `servicebus` would reach the ServiceBus of a node
 * that has no `alerts` module.
 *
 * Answers flow back without a rule of their own: a response or error from B to
 * A is forwarded only if it answers a request the hub forwarded from A to B
 * (remembered, bounded, for a while), never as a free pass for B.
 */
import { InvalidOptionError } from '../errors.js'
import { isValidNodeName } from '../identity/token.js'
import type { NodeInfo } from './types.js'

export interface EdgeToEdgeRule {
  /** Source node id, or `*`. */
  from: string
  /** Destination node id, or `*`. */
  to: string
  /** Module name or group reached on the destination (e.g. `servicebus`), or `*`. */
  module: string
}

/** A rule as an object or as the CLI's `FROM->TO:MODULE` text. */
export type EdgeToEdgeRuleInput = EdgeToEdgeRule | string

/**
 * `false` (default) denies all; a list allows what its rules name; a function
 * decides per message (it gets the module/group that would be reached and is
 * called once per name, see the file comment).
 */
export type EdgeToEdgeOption = false | readonly EdgeToEdgeRuleInput[] | ((from: NodeInfo, to: NodeInfo, module: string) => boolean)

const MODULE_NAME = /^[A-Za-z0-9_.$-]{1,128}$/

function part (kind: 'node' | 'module', value: unknown, where: string): string {
  if (value === '*') return '*'
  const ok = kind === 'node' ? isValidNodeName(value) : typeof value === 'string' && MODULE_NAME.test(value)
  if (!ok) throw new InvalidOptionError(where, `${kind === 'node' ? 'a node name' : 'a module or group name'} or "*" is needed, got ${JSON.stringify(value)}`)
  return value as string
}

/** Parse `FROM->TO:MODULE`. Throws InvalidOptionError naming `where`. */
export function parseEdgeToEdgeRule (text: string, where = 'edgeToEdge'): EdgeToEdgeRule {
  const m = /^\s*([^\s>]+?)\s*->\s*([^\s:]+?)\s*:\s*(\S+)\s*$/.exec(text)
  if (m === null) throw new InvalidOptionError(where, `must look like FROM->TO:MODULE (e.g. "a->b:servicebus", "*" matches any), got ${JSON.stringify(text)}`)
  return { from: part('node', m[1], where), to: part('node', m[2], where), module: part('module', m[3], where) }
}

export type EdgeToEdgeCheck = (from: NodeInfo, to: NodeInfo, module: string) => boolean

/** Validate the option once; the result answers "may `from` reach `module` on `to`?". */
export function resolveEdgeToEdge (option: unknown): { check: EdgeToEdgeCheck, rules: readonly EdgeToEdgeRule[] | undefined } {
  if (option === undefined || option === false) return { check: () => false, rules: Object.freeze([]) }
  if (option === true) {
    throw new InvalidOptionError('edgeToEdge', 'true is not accepted any more: it opened every module of every edge, ServiceBus included. ' +
      'List what may talk, e.g. ["a->b:alerts"] (CLI: --edge-to-edge a->b:alerts); "*->*:*" allows everything')
  }
  if (typeof option === 'function') {
    const fn = option as EdgeToEdgeCheck
    return { check: (a, b, m) => fn(a, b, m) === true, rules: undefined }
  }
  if (!Array.isArray(option)) throw new InvalidOptionError('edgeToEdge', 'must be false, a list of rules ("FROM->TO:MODULE" or {from, to, module}) or a function')
  const rules = Object.freeze(option.map((r: unknown, i) => {
    const where = `edgeToEdge[${i}]`
    if (typeof r === 'string') return Object.freeze(parseEdgeToEdgeRule(r, where))
    if (typeof r !== 'object' || r === null) throw new InvalidOptionError(where, 'must be "FROM->TO:MODULE" or {from, to, module}')
    const o = r as Record<string, unknown>
    return Object.freeze({ from: part('node', o.from, `${where}.from`), to: part('node', o.to, `${where}.to`), module: part('module', o.module, `${where}.module`) })
  }))
  const match = (rule: string, value: string): boolean => rule === '*' || rule === value
  return {
    rules,
    check: (a, b, m) => rules.some(r => match(r.from, a.nodeId) && match(r.to, b.nodeId) && match(r.module, m))
  }
}

/**
 * Requests the hub forwarded, so their answers may flow back: id → the pair.
 * Bounded (oldest dropped first) and aged out; an answer is let through once.
 */
export class ForwardedRequests {
  readonly #max: number
  readonly #ttlMs: number
  readonly #map = new Map<string, { from: string, to: string, at: number }>()

  constructor (max: number, ttlMs: number) {
    this.#max = max
    this.#ttlMs = ttlMs
  }

  get size (): number { return this.#map.size }

  remember (id: string, from: string, to: string, now: number): void {
    if (this.#map.size >= this.#max) {
      const oldest = this.#map.keys().next()
      if (oldest.done !== true) this.#map.delete(oldest.value)
    }
    this.#map.delete(id)
    this.#map.set(id, { from, to, at: now })
  }

  /** True (once) if `responder` answers request `parentId` that `requester` sent it through the hub. */
  takeAnswer (parentId: string | undefined, responder: string, requester: string, now: number): boolean {
    if (parentId === undefined) return false
    const e = this.#map.get(parentId)
    if (e === undefined || e.from !== requester || e.to !== responder) return false
    this.#map.delete(parentId)
    return now - e.at <= this.#ttlMs
  }
}
