// Replayed DPoP proofs (RFC 9449 §11.1): a proof's jti is remembered for as long as the proof
// could be accepted, and a second use is refused. In memory per process here; in Redis, shared
// by every replica, when the revocation backend is Redis (src/revocation/redis.ts).
import { deny, type Denial } from '../http/denial.js'

export interface ProofReplay {
  /**
   * Records the first use of `key` for `ttlMs`: true for the first use, false for a replay, a
   * denial when the use cannot be recorded (the store is full or unreachable): fail closed.
   */
  firstUse(key: string, ttlMs: number, now: number): boolean | Denial | Promise<boolean | Denial>
}

export const REPLAY_FULL: Denial = Object.freeze(deny('proof_replay_unavailable', 'too many recent DPoP proofs to remember; try again shortly'))

/**
 * Proof ids in a Map with their expiry, bounded. Every entry lives about as long (the proof
 * window), so insertion order is nearly expiry order: expired entries are swept from the front.
 * When the cache is full of live entries a new proof is refused (503): forgetting a live one
 * would let it be replayed.
 */
export class MemoryProofReplay implements ProofReplay {
  private readonly used = new Map<string, number>()
  private sweptAt = Number.NEGATIVE_INFINITY

  constructor(readonly maxEntries: number) {}

  firstUse(key: string, ttlMs: number, now: number): boolean | Denial {
    const until = this.used.get(key)
    if (until !== undefined && now < until) return false
    if (this.used.size >= this.maxEntries) {
      // A full sweep walks every entry: at most once a second while full.
      if (now - this.sweptAt >= 1000) this.sweep(now)
      if (this.used.size >= this.maxEntries) return REPLAY_FULL
    }
    // Re-inserted at the end, so the front stays the oldest.
    this.used.delete(key)
    this.used.set(key, now + ttlMs)
    return true
  }

  /** Drops every expired entry. */
  sweep(now: number): void {
    this.sweptAt = now
    for (const [key, until] of this.used) {
      if (until <= now) this.used.delete(key)
    }
  }

  get size(): number {
    return this.used.size
  }
}
