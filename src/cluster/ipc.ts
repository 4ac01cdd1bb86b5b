// What the primary and its workers say to each other over the cluster's IPC channel: questions
// with an answer (bounded by a timeout: a worker that is busy or gone must not hang /readyz or
// a revocation), and one-way events.
import type { Revocation } from '../revocation/store.js'

/** Primary → worker: readiness, metrics, reload, revoke. Worker → primary: revocations (its start-up copy). */
export type Question = { kind: 'readiness' } | { kind: 'metrics' } | { kind: 'reload' } | { kind: 'revoke'; entry: Revocation } | { kind: 'revocations' }

/**
 * Worker → primary: attached (it answers questions from now on), listening; primary → worker:
 * shutdown (graceful: drain delay, stop accepting, finish in-flight requests, exit).
 */
export type Event = { kind: 'attached' } | { kind: 'listening' } | { kind: 'shutdown' }

/**
 * Set by the primary in a worker's environment: the port each worker opens a socket of its own
 * on, with SO_REUSEPORT (`listen.reuse_port`). Unset: the primary's socket is shared.
 */
export const REUSE_PORT_ENV = 'JWTGATE_REUSE_PORT'

type Envelope =
  | { jwtgate: 'ask'; id: number; question: Question }
  | { jwtgate: 'answer'; id: number; value?: unknown; error?: string }
  | { jwtgate: 'event'; event: Event }

type Send = (message: Envelope, done: (error: Error | null) => void) => void

interface Pending {
  resolve(value: unknown): void
  reject(error: Error): void
  timer: NodeJS.Timeout
}

/** One end of the channel: asks and answers questions, passes events on. */
export class Channel {
  private nextId = 0
  private readonly pending = new Map<number, Pending>()

  constructor(
    private readonly send: Send,
    private readonly answer: (question: Question) => Promise<unknown>,
  ) {}

  ask<T>(question: Question, timeoutMs: number): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(id, undefined, `no answer within ${timeoutMs} ms`), timeoutMs)
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer })
      this.send({ jwtgate: 'ask', id, question }, (error) => {
        if (error) this.settle(id, undefined, error.message)
      })
    })
  }

  tell(event: Event): void {
    // A closed channel is reported by its disconnect and exit events; nothing to do here.
    this.send({ jwtgate: 'event', event }, () => {})
  }

  /** Handles one incoming message; returns it when it is an event for the caller. */
  receive(message: unknown): Event | undefined {
    if (!isEnvelope(message)) return undefined
    if (message.jwtgate === 'event') return message.event
    if (message.jwtgate === 'answer') this.settle(message.id, message.value, message.error)
    else void this.reply(message.id, message.question)
    return undefined
  }

  /** The other end is gone: every open question fails now rather than at its timeout. */
  close(reason: string): void {
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, reason)
  }

  private async reply(id: number, question: Question): Promise<void> {
    let answer: Envelope
    try {
      answer = { jwtgate: 'answer', id, value: await this.answer(question) }
    } catch (err) {
      answer = { jwtgate: 'answer', id, error: (err as Error).message }
    }
    this.send(answer, () => {})
  }

  private settle(id: number, value: unknown, error: string | undefined): void {
    const pending = this.pending.get(id)
    if (!pending) return
    this.pending.delete(id)
    clearTimeout(pending.timer)
    if (error !== undefined) pending.reject(new Error(error))
    else pending.resolve(value)
  }
}

// Anything else on the channel is not ours.
function isEnvelope(message: unknown): message is Envelope {
  return typeof message === 'object' && message !== null && 'jwtgate' in message
}
