/**
 * The one request/reply channel between a benchmark orchestrator and its
 * child processes (bench/reliable.ts, bench/sessions.ts, bench/lossy.ts and
 * their children), over Node's IPC channel. Every request carries `seq`, the
 * child answers with the same `seq`, so the orchestrator can await replies.
 *
 * Children started with fork() (IpcChild.fork) and children started some
 * other way with an 'ipc' stdio slot (e.g. `ip netns exec … node script`
 * through LinkLab.spawnIn, wrapped with `new IpcChild(name, proc)`) speak the
 * same protocol; in the child, serveParent() answers. `quit` and `cpu` are
 * built in on both sides.
 */
import { fork, type ChildProcess } from 'node:child_process'

export type IpcRequest = { seq: number, cmd: string } & Record<string, unknown>
export type IpcReply = { seq: number, ok: true, result: unknown } | { seq: number, ok: false, error: string }

export interface ForkOptions {
  /** Node flags of the child (e.g. --expose-gc, --cpu-prof). @default [] */
  execArgv?: string[]
  /**
   * 'advanced' (structured clone: Buffers, typed arrays) or 'json'. JSON for
   * large plain-data messages: 'advanced' was seen to stall for good on a
   * ~1 MB message in one run of ten (bench/sessions). @default 'advanced'
   */
  serialization?: 'advanced' | 'json'
}

/** A child process answering requests over its IPC channel. */
export class IpcChild {
  readonly name: string
  readonly proc: ChildProcess
  /** Resolves with the exit code once the child is gone (every pending request is rejected first). */
  readonly exited: Promise<number | null>
  #seq = 0
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()

  /** Wrap a child that already has an IPC channel (stdio slot 'ipc'). */
  constructor (name: string, proc: ChildProcess) {
    this.name = name
    this.proc = proc
    proc.on('message', (m: IpcReply) => {
      const w = this.#waiting.get(m.seq)
      if (w === undefined) return
      this.#waiting.delete(m.seq)
      if (m.ok) w.resolve(m.result)
      else w.reject(new Error(`${name}: ${m.error}`))
    })
    proc.on('error', () => {})
    this.exited = new Promise(resolve => {
      proc.once('exit', code => {
        for (const w of this.#waiting.values()) w.reject(new Error(`${name} exited (code ${String(code)})`))
        this.#waiting.clear()
        resolve(code)
      })
    })
  }

  /** fork() `script` with stdout/stderr inherited and an IPC channel. */
  static fork (name: string, script: URL, args: string[] = [], o: ForkOptions = {}): IpcChild {
    return new IpcChild(name, fork(script, args, {
      execArgv: o.execArgv ?? [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: o.serialization ?? 'advanced'
    }))
  }

  /**
   * Send `cmd` with `args`; resolves with the child's result. With
   * `timeoutMs`, rejects when no reply comes in time (a stuck child must not
   * hang the bench); without, waits until the reply or the child's exit.
   */
  request<T> (cmd: string, args: Record<string, unknown> = {}, timeoutMs?: number): Promise<T> {
    const seq = ++this.#seq
    return new Promise<T>((resolve, reject) => {
      const timer = timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
          this.#waiting.delete(seq)
          reject(new Error(`${this.name}: no reply to "${cmd}" within ${timeoutMs} ms`))
        }, timeoutMs)
      this.#waiting.set(seq, {
        resolve: v => { clearTimeout(timer); (resolve as (v: unknown) => void)(v) },
        reject: e => { clearTimeout(timer); reject(e) }
      })
      this.proc.send({ ...args, cmd, seq }, err => {
        if (err == null) return
        this.#waiting.delete(seq)
        clearTimeout(timer)
        reject(err)
      })
    })
  }

  /** Ask the child to quit; SIGKILL when it has not exited `timeoutMs` later. */
  async quit (timeoutMs = 10_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    const t = setTimeout(() => { this.proc.kill('SIGKILL') }, timeoutMs)
    await this.request('quit').catch(() => {})
    await this.exited
    clearTimeout(t)
  }

  /** CPU µs used by the child so far (user + system, all threads). */
  cpu (): Promise<number> { return this.request<number>('cpu') }

  kill (): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL')
  }
}

/**
 * In a child: answer parent requests with `handler` (its result, or its
 * error's message). Built in: `cpu` → CPU µs used so far; `quit` → runs
 * `onQuit`, replies, exits 0. The child also exits when the orchestrator's
 * channel closes: it must not linger holding sockets or namespaces.
 */
export function serveParent<R extends IpcRequest = IpcRequest> (handler: (req: R) => Promise<unknown>, onQuit: () => Promise<void> = async () => {}): void {
  const reply = (m: IpcReply, then?: () => void): void => {
    // The channel may be gone already (orchestrator died): nothing to tell.
    if (process.send === undefined) { then?.(); return }
    try { process.send(m, undefined, undefined, () => then?.()) } catch { then?.() }
  }
  process.on('message', (req: R) => {
    if (req.cmd === 'cpu') {
      const c = process.cpuUsage()
      reply({ seq: req.seq, ok: true, result: c.user + c.system })
      return
    }
    if (req.cmd === 'quit') {
      onQuit().catch(() => {}).finally(() => { reply({ seq: req.seq, ok: true, result: true }, () => process.exit(0)) })
      return
    }
    handler(req).then(result => {
      reply({ seq: req.seq, ok: true, result })
    }, (err: unknown) => {
      reply({ seq: req.seq, ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) })
    })
  })
  process.on('disconnect', () => process.exit(0))
}
