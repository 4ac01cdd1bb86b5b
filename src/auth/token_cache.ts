// Verified tokens, so a token seen again costs a map read instead of a signature check
// (RS256 is ~40 µs, ES256 ~80 µs; a hit is about a microsecond). Only successes are kept, keyed
// by the SHA-256 of the whole token: the same bytes verify the same way, except for what changes
// with time or keys, which is checked on every hit: the entry expires at the token's exp (plus
// the skew), and a key dropped from its issuer's key set invalidates every token it verified.
// The digest, not the token, is the key: 43 characters instead of the token's hundreds or
// thousands (the cache's heap, and so the process's memory, shrinks by about that), and a heap
// dump of the process holds no usable token. A cryptographic digest, because a key two tokens
// share would let the second skip its signature check.
import { hash } from 'node:crypto'
import type { Issuer } from './issuer.js'
import type { PreparedKey } from './keys.js'

export interface VerifiedToken {
  issuer: Issuer
  key: PreparedKey
  claims: Record<string, unknown>
  /** The header's typ, which routes may require (the claims do not carry it). */
  typ: string | undefined
  /** ms since the epoch; past it the entry is gone. */
  expiresAt: number
}

/** When a token has no exp (require_exp: false), how long a verification is trusted. */
const NO_EXP_TTL_MS = 60_000

/** The cache key of a token: its SHA-256, base64url (computed once per request, for get and set). */
export function tokenKey(token: string): string {
  return hash('sha256', token, 'base64url')
}

/**
 * What an entry is counted as toward `max_bytes`: its key, the token's claims as parsed objects
 * (2.5 times the payload's JSON length, read from the base64url segment's length, so nothing is
 * serialized), and the entry's own objects. Measured with --expose-gc (heapUsed per entry over
 * thousands, bench/token_cache_heap.ts, Node 24): a 12.6 KB token with a 9.4 KB payload holding
 * 450 groups, 21.9 KB (counted 23.8 KB; 36.0 KB while the token itself was the key); a 243-byte
 * token with a 121-byte payload, 489 bytes (counted 625; 741 before). The claims' objects are
 * most of an entry: short strings in an array cost more than twice their JSON.
 */
export function entryBytes(token: string): number {
  const first = token.indexOf('.')
  const last = token.lastIndexOf('.')
  const payloadJson = first < 0 || last <= first ? token.length : Math.ceil(((last - first - 1) * 3) / 4)
  return KEY_BYTES + Math.ceil(payloadJson * 2.5) + ENTRY_OVERHEAD
}

const ENTRY_OVERHEAD = 256
// A 43-character one-byte string.
const KEY_BYTES = 64

/** Bounded by entries and by bytes (entryBytes): whichever is reached first evicts. */
export class TokenCache {
  // A Map keeps insertion order, so the oldest entry is the first: eviction is FIFO, which,
  // unlike an LRU, costs nothing on a hit and does not thrash when tokens rotate.
  private readonly entries = new Map<string, VerifiedToken & { bytes: number }>()
  private counted = 0

  constructor(
    readonly maxEntries: number,
    readonly maxBytes: number = Number.POSITIVE_INFINITY,
  ) {}

  /** `key`: tokenKey(token). */
  get(key: string, now: number): VerifiedToken | undefined {
    const entry = this.entries.get(key)
    if (!entry) return undefined
    if (now >= entry.expiresAt || !entry.issuer.holdsKey(entry.key)) {
      this.delete(key, entry.bytes)
      return undefined
    }
    return entry
  }

  /** `token`, for its size; `cacheKey`: tokenKey(token), computed once for the request's get and set. */
  set(token: string, cacheKey: string, issuer: Issuer, key: PreparedKey, claims: Record<string, unknown>, now: number, typ?: string): void {
    if (this.maxEntries === 0) return
    const bytes = entryBytes(token)
    // One token larger than the whole budget is not kept (and does not empty the cache).
    if (bytes > this.maxBytes) return
    const exp = claims.exp
    const expiresAt = typeof exp === 'number' ? exp * 1000 + issuer.clockSkewMs : now + NO_EXP_TTL_MS
    const previous = this.entries.get(cacheKey)
    if (previous) this.delete(cacheKey, previous.bytes)
    while (this.entries.size > 0 && (this.entries.size >= this.maxEntries || this.counted + bytes > this.maxBytes)) {
      const [oldest, entry] = this.entries.entries().next().value!
      this.delete(oldest, entry.bytes)
    }
    this.entries.set(cacheKey, { issuer, key, claims, typ, expiresAt, bytes })
    this.counted += bytes
  }

  get size(): number {
    return this.entries.size
  }

  /** The entries' bytes as entryBytes counts them. */
  get bytes(): number {
    return this.counted
  }

  private delete(cacheKey: string, bytes: number): void {
    this.entries.delete(cacheKey)
    this.counted -= bytes
  }
}
