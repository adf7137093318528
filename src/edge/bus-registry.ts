/**
 * Registered modules of a ModuleBus, by name and by group (groups keep
 * registration order, so fan-out order is predictable).
 */
import { ModuleBusError } from '../errors.js'
import type { ModuleHandle } from './bus-handle.js'
import type { Mailbox } from './bus-mailbox.js'
import type { ModuleStats } from './bus-types.js'

export interface Module {
  handle: ModuleHandle
  mailbox: Mailbox
  /** Opted in to '$edge' connection events. */
  connectionEvents: boolean
}

export class ModuleRegistry {
  readonly #byName = new Map<string, Module>()
  readonly #byGroup = new Map<string, Set<string>>()

  has (name: string): boolean { return this.#byName.has(name) }
  get (name: string): Module | undefined { return this.#byName.get(name) }
  names (): string[] { return [...this.#byName.keys()] }
  all (): IterableIterator<Module> { return this.#byName.values() }

  add (m: Module): void {
    const { name, group } = m.handle
    if (this.#byName.has(name)) throw new ModuleBusError('duplicate-module', `module "${name}" is already registered`)
    this.#byName.set(name, m)
    let members = this.#byGroup.get(group)
    if (members === undefined) this.#byGroup.set(group, members = new Set())
    members.add(name)
  }

  remove (name: string): Module | undefined {
    const m = this.#byName.get(name)
    if (m === undefined) return undefined
    this.#byName.delete(name)
    const members = this.#byGroup.get(m.handle.group)
    members?.delete(name)
    if (members?.size === 0) this.#byGroup.delete(m.handle.group)
    return m
  }

  /** Modules of `group`, in registration order. */
  members (group: string): Module[] {
    const names = this.#byGroup.get(group)
    if (names === undefined) return []
    const out: Module[] = []
    for (const n of names) {
      const m = this.#byName.get(n)
      if (m !== undefined) out.push(m)
    }
    return out
  }

  stats (): ModuleStats[] {
    return [...this.#byName.values()].map(({ handle, mailbox }) => ({
      name: handle.name,
      group: handle.group,
      depth: mailbox.depth,
      bytes: mailbox.bytes,
      capacity: mailbox.options.capacity,
      maxBytes: mailbox.options.maxBytes,
      overflow: mailbox.options.overflow,
      blockedSenders: mailbox.blockedSenders,
      accepted: mailbox.accepted,
      consumed: mailbox.consumed,
      handlerErrors: handle.handlerErrors,
      dropped: { ...mailbox.dropped }
    }))
  }
}
