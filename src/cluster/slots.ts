// The primary's N worker slots: each holds one worker process, forked at start and forked
// again when its worker dies, with a growing delay when it keeps dying.
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { Channel, type Question } from './ipc.js'

/** forked: not talking yet; attached: loading its policy, answers questions; up: listening. */
export type SlotState = 'forked' | 'attached' | 'up' | 'waiting'

export interface Slot {
  /** 1..N: the `worker` field of its log lines, and how /readyz names it. */
  readonly number: number
  state: SlotState
  worker: Worker | undefined
  channel: Channel | undefined
  /** When its recent workers exited unexpectedly (ms since the epoch). */
  exits: number[]
  restartTimer: NodeJS.Timeout | undefined
}

export type Outcome<T> = { slot: Slot; value: T } | { slot: Slot; error: string }

// A worker that keeps dying (a policy it cannot load, a crash at start) is restarted quickly a
// few times, then with a doubling delay; the count is of exits within the window.
const QUICK_RESTARTS = 3
const QUICK_RESTART_DELAY_MS = 100
const RESTART_WINDOW_MS = 60_000
const MAX_RESTART_DELAY_MS = 30_000

export class WorkerSlots {
  readonly slots: Slot[]
  private stopping = false

  constructor(
    count: number,
    private readonly logger: Logger,
    private readonly answer: (slot: Slot, question: Question) => Promise<unknown>,
    /** Added to each worker's environment. */
    private readonly env: Record<string, string> = {},
  ) {
    this.slots = Array.from({ length: count }, (_, i) => ({
      number: i + 1,
      state: 'waiting',
      worker: undefined,
      channel: undefined,
      exits: [],
      restartTimer: undefined,
    }))
  }

  start(): void {
    for (const slot of this.slots) this.fork(slot)
  }

  get allUp(): boolean {
    return this.slots.every((s) => s.state === 'up')
  }

  /** Asks every slot whose worker is in one of `states`; the others are left out. */
  askAll<T>(question: Question, timeoutMs: number, states: SlotState[] = ['up']): Promise<Array<Outcome<T>>> {
    const asked = this.slots.filter((s) => states.includes(s.state) && s.channel)
    return Promise.all(
      asked.map((slot) =>
        slot.channel!.ask<T>(question, timeoutMs).then(
          (value) => ({ slot, value }),
          (err: Error) => ({ slot, error: err.message }),
        ),
      ),
    )
  }

  /**
   * Tells every worker to shut down gracefully and waits for them to exit; after `timeoutMs`
   * the ones still running are killed.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true
    const running = this.slots.flatMap((slot) => {
      clearTimeout(slot.restartTimer)
      const worker = slot.worker
      if (!worker || worker.isDead()) return []
      return [{ slot, worker, exited: new Promise<void>((resolve) => worker.once('exit', () => resolve())) }]
    })
    for (const { slot, worker } of running) {
      if (slot.channel) slot.channel.tell({ kind: 'shutdown' })
      // Not talking yet: it has no requests in flight.
      else worker.kill('SIGKILL')
    }
    let deadline: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => {
      deadline = setTimeout(resolve, timeoutMs)
    })
    await Promise.race([Promise.all(running.map((r) => r.exited)), late])
    clearTimeout(deadline)
    const left = running.filter(({ worker }) => !worker.isDead())
    for (const { slot, worker } of left) {
      this.logger.error({ worker: slot.number, pid: worker.process.pid, timeout_ms: timeoutMs }, 'worker did not exit in time; killing it')
      worker.kill('SIGKILL')
    }
    await Promise.all(left.map((r) => r.exited))
  }

  private fork(slot: Slot): void {
    slot.restartTimer = undefined
    if (this.stopping) return
    const worker = cluster.fork({ ...this.env, JWTGATE_WORKER: String(slot.number) })
    slot.worker = worker
    slot.state = 'forked'
    slot.channel = undefined
    const channel = new Channel(
      (message, done) => {
        if (worker.isConnected()) worker.send(message, undefined, done)
        else done(new Error('worker disconnected'))
      },
      (question) => this.answer(slot, question),
    )
    this.logger.info({ worker: slot.number, pid: worker.process.pid }, `worker ${slot.number} started`)
    worker.on('message', (message) => {
      const event = channel.receive(message)
      if (event?.kind === 'attached') {
        slot.channel = channel
        slot.state = 'attached'
      } else if (event?.kind === 'listening') {
        slot.state = 'up'
        this.logger.info({ worker: slot.number, pid: worker.process.pid }, `worker ${slot.number} listening`)
        if (this.allUp) this.logger.info({ workers: this.slots.length }, 'all workers listening')
      }
    })
    worker.on('disconnect', () => channel.close('the worker disconnected'))
    worker.on('exit', (code, signal) => this.exited(slot, worker, code, signal))
  }

  private exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return
    slot.worker = undefined
    slot.channel = undefined
    slot.state = 'waiting'
    if (this.stopping) {
      this.logger.info({ worker: slot.number, pid: worker.process.pid, code }, `worker ${slot.number} exited`)
      return
    }
    const now = Date.now()
    slot.exits = [...slot.exits.filter((at) => now - at < RESTART_WINDOW_MS), now]
    const recent = slot.exits.length
    const delayMs = recent <= QUICK_RESTARTS ? QUICK_RESTART_DELAY_MS : Math.min(MAX_RESTART_DELAY_MS, 1000 * 2 ** (recent - QUICK_RESTARTS - 1))
    this.logger.error(
      { worker: slot.number, pid: worker.process.pid, code, signal, exits_in_last_minute: recent, restart_in_ms: delayMs },
      `worker ${slot.number} died; starting another`,
    )
    slot.restartTimer = setTimeout(() => this.fork(slot), delayMs)
  }
}
