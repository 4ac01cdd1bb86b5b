// The last N refused requests, for the status page: a ring of slots written in place, so a flood
// of refusals costs no allocation and no more memory than N entries. What a slot keeps is what the
// access line says of the request, less: never a token, a cookie, a header or the query string;
// the subject only when the policy asks (admin.status.show_subjects).
import { splitTarget } from '../routing/normalize.js'
import type { RequestState } from '../gateway/request_state.js'

export interface Refusal {
  /** When it was answered, in ms since the epoch. */
  at: number
  /** The x-request-id of the answer and of its access line. */
  requestId: string
  method: string
  /** The normalized path (or, for a path that could not be, the raw one), cut; never the query. */
  path: string
  route: string | undefined
  status: number
  /** The reason code of the answer: a refusal's, or an upstream failure's. */
  reason: string
  /** The refusal's words as the client got them; empty for a failure (its words are the reason's). */
  description: string
  /** The issuer the token was checked against, when one was chosen. */
  issuer: string | undefined
  /** The upstream, for a failure on the way to it. */
  upstream: string | undefined
  /** The token's sub: only with admin.status.show_subjects. */
  subject: string | undefined
  /** Which worker answered (with `workers: N`, set by the primary). */
  worker?: number
}

const MAX_PATH = 200
const MAX_SUBJECT = 200

export class RefusalRing {
  private slots: Refusal[] = []
  /** Where the next refusal goes. */
  private next = 0

  constructor(private capacity: number) {}

  /** A policy changed admin.status.recent_refusals: the newest are kept. */
  resize(capacity: number): void {
    if (capacity === this.capacity) return
    const kept = this.list().slice(0, capacity).reverse()
    this.capacity = capacity
    this.slots = kept
    this.next = kept.length % Math.max(1, capacity)
  }

  get size(): number {
    return this.capacity
  }

  remember(state: RequestState, requestId: string, method: string, target: string, status: number, showSubject: boolean): void {
    if (this.capacity === 0) return
    let slot = this.slots[this.next]
    if (!slot) this.slots[this.next] = slot = blank()
    this.next = (this.next + 1) % this.capacity
    const denial = state.denial
    slot.at = Date.now()
    slot.requestId = requestId
    slot.method = method.slice(0, 16)
    slot.path = (state.path ?? splitTarget(target).path).slice(0, MAX_PATH)
    slot.route = state.route?.name
    slot.status = status
    slot.reason = denial?.reason ?? state.upstreamError ?? 'unknown'
    slot.description = denial?.description ?? ''
    slot.issuer = state.issuer?.name
    slot.upstream = denial ? undefined : state.route?.upstream.name
    const sub = showSubject ? state.identity?.claims.sub : undefined
    slot.subject = typeof sub === 'string' ? sub.slice(0, MAX_SUBJECT) : undefined
  }

  /** Newest first, as copies. */
  list(): Refusal[] {
    const out: Refusal[] = []
    const n = this.slots.length
    for (let i = 1; i <= n; i++) {
      const slot = this.slots[(this.next - i + n) % n]
      if (slot) out.push({ ...slot })
    }
    return out
  }
}

function blank(): Refusal {
  return {
    at: 0,
    requestId: '',
    method: '',
    path: '',
    route: undefined,
    status: 0,
    reason: '',
    description: '',
    issuer: undefined,
    upstream: undefined,
    subject: undefined,
  }
}
