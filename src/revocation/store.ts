// A revocation store: the revoked set in memory (what requests read), a backend it is loaded
// from and written to, and the state that says whether the set can be trusted. The request
// path calls only `check` (synchronous, two Map reads) and, on `replay_protection` routes,
// `consumeOnce` (one backend round trip). Backends: memory.ts, file.ts, redis.ts.
import type { Logger } from 'pino'
import type { RevocationCheck } from '../auth/authenticate.js'
import type { ProofReplay } from '../auth/replay.js'
import { deny, type Denial } from '../http/denial.js'
import { jtiOf, RevocationSet, unscope } from './set.js'

export type Backend = 'memory' | 'file' | 'redis'

/** What a store is built from; two equal settings make the same store (reloads keep it). */
export interface RevocationSettings {
  backend: Backend
  /** true: `fail_closed`; false: `serve_stale`. */
  failClosed: boolean
  /** How long a subject revocation (and a jti revocation without exp) is kept. */
  maxTokenLifetimeMs: number
  /** Absolute path, for the file backend. */
  file?: { path: string }
  redis?: { url: string; keyPrefix: string; timeoutMs: number }
}

/**
 * idle: never started (offline tools such as `explain` do not see revocations);
 * loading: started, never synced: no set to trust yet, so every token gets 503;
 * synced: the set is current; stale: the backend was lost after a sync;
 * stopped: the gateway is closing.
 */
export type StoreState = 'idle' | 'loading' | 'synced' | 'stale' | 'stopped'

/** `iss`: the issuer (the tokens' `iss` claim) the entry applies to; absent: every issuer. */
export type Revocation =
  | { kind: 'jti'; id: string; expiresAt: number; exp?: number; iss?: string }
  | { kind: 'sub'; id: string; before: number; expiresAt: number; iss?: string }

export interface RevocationStats {
  backend: Backend
  state: StoreState
  on_backend_unavailable: 'fail_closed' | 'serve_stale'
  jti: number
  subjects: number
  last_sync: string | null
  unavailable_since: string | null
  last_error: string | null
}

export const REVOKED: Denial = Object.freeze(deny('revoked', 'token revoked'))
export const REPLAYED: Denial = Object.freeze(deny('replayed', 'the token was already used'))
export const UNAVAILABLE: Denial = Object.freeze(deny('revocation_unavailable', 'the token revocation list is unavailable; try again later'))
const NO_JTI: Denial = Object.freeze(deny('invalid_claims', 'a one-time token needs a jti claim'))

// Expired entries are deleted when a lookup meets them; the sweep catches the rest.
const SWEEP_INTERVAL_MS = 30_000

export abstract class RevocationStore implements RevocationCheck {
  readonly set = new RevocationSet()
  protected state: StoreState = 'idle'
  protected lastSyncAt: number | undefined
  protected unavailableSince: number | undefined
  protected lastError: string | undefined
  /**
   * Added to a token's exp to get how long its entry must be kept: the largest clock_skew of
   * the policy's issuers, since a token is accepted until exp + skew. Updated on reloads.
   */
  marginMs = 0
  private sweeper: NodeJS.Timeout | undefined
  /**
   * The store a reload replaced this one with, when it took this one's entries over
   * (MemoryStore.takeOver): a revocation that completes here after the hand-over reaches it too.
   */
  protected successor: RevocationStore | undefined

  constructor(
    readonly settings: RevocationSettings,
    protected readonly log: Logger,
  ) {}

  /** The per-request check: local, synchronous, no I/O. */
  check(claims: Record<string, unknown>, now: number): Denial | undefined {
    const state = this.state
    if (state !== 'synced' && state !== 'idle' && (state === 'loading' || this.settings.failClosed)) return UNAVAILABLE
    return this.set.isRevoked(claims, now) ? REVOKED : undefined
  }

  /** Replay protection: the first use of a jti passes; any later one within its lifetime fails. */
  async consumeOnce(claims: Record<string, unknown>): Promise<Denial | undefined> {
    const jti = jtiOf(claims)
    if (jti === undefined || jti === '') return NO_JTI
    const now = Date.now()
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : now + this.settings.maxTokenLifetimeMs
    try {
      // The issuer is part of the key: jti values are unique per issuer only.
      return (await this.claimFirstUse(JSON.stringify([claims.iss, jti]), Math.max(1000, exp + this.marginMs - now))) ? undefined : REPLAYED
    } catch (err) {
      this.log.warn({ error: (err as Error).message }, 'replay protection: the backend is unavailable')
      return UNAVAILABLE
    }
  }

  /**
   * Where used DPoP proofs are remembered when the backend is shared by every replica (redis);
   * undefined: in memory, per process. `maxEntries` bounds what is kept locally meanwhile.
   */
  proofReplay(_maxEntries: number): ProofReplay | undefined {
    return undefined
  }

  /** Revokes one token by its jti, kept until its exp (default: now + max_token_lifetime). */
  async revokeJti(id: string, exp?: number, iss?: string): Promise<Revocation> {
    const expiresAt = (exp !== undefined ? exp * 1000 : Date.now() + this.settings.maxTokenLifetimeMs) + this.marginMs
    const entry: Revocation = { kind: 'jti', id, expiresAt, ...(exp !== undefined ? { exp } : {}), ...(iss !== undefined ? { iss } : {}) }
    await this.persist(entry)
    this.remember(entry)
    return entry
  }

  /**
   * Revokes every token of a subject issued before `before` (unix seconds; default: now plus
   * the margin, the largest clock_skew of the issuers, plus one second: a token is accepted with
   * an iat up to the skew ahead, so one minted now by an issuer whose clock is ahead is covered
   * too, and so is every token issued so far).
   */
  async revokeSubject(id: string, before = this.defaultBefore(), iss?: string): Promise<Revocation> {
    const expiresAt = before * 1000 + this.settings.maxTokenLifetimeMs + this.marginMs
    const entry: Revocation = { kind: 'sub', id, before, expiresAt, ...(iss !== undefined ? { iss } : {}) }
    await this.persist(entry)
    this.remember(entry)
    return entry
  }

  /** Unix seconds past every iat accepted now: now + the largest clock_skew, rounded down, + 1. */
  defaultBefore(now = Date.now()): number {
    return Math.floor((now + this.marginMs) / 1000) + 1
  }

  /**
   * Adds a revocation already stored elsewhere to this process's set: the cluster primary sends
   * each one it stored to every worker, so it holds at once on all of them.
   */
  remember(entry: Revocation): void {
    if (entry.kind === 'jti') this.set.addJti(entry.id, entry.expiresAt, entry.iss)
    else this.set.addSubject(entry.id, entry.before, entry.expiresAt, entry.iss)
    if (this.successor) this.successor.remember(entry)
    else changed()
  }

  /** The entries still in force, as revocations (the primary hands them to a new worker). */
  entries(now = Date.now()): Revocation[] {
    this.sweep(now)
    const list: Revocation[] = []
    for (const [key, expiresAt] of this.set.jti) list.push({ kind: 'jti', ...unscope(key), expiresAt })
    for (const [key, e] of this.set.subjects) list.push({ kind: 'sub', ...unscope(key), before: e.before, expiresAt: e.expiresAt })
    return list
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') return
    this.state = 'loading'
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_INTERVAL_MS)
    this.sweeper.unref()
    await this.open()
    if (this.state === 'loading')
      this.log.warn({ backend: this.settings.backend, error: this.lastError }, 'revocation list not loaded yet; tokens get 503 until it is')
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return
    this.state = 'stopped'
    clearInterval(this.sweeper)
    await this.close()
  }

  /** Sweeps first, so the counts are of entries that still matter. */
  stats(): RevocationStats {
    this.sweep(Date.now())
    const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString())
    return {
      backend: this.settings.backend,
      state: this.state,
      on_backend_unavailable: this.settings.failClosed ? 'fail_closed' : 'serve_stale',
      jti: this.set.jti.size,
      subjects: this.set.subjects.size,
      last_sync: iso(this.lastSyncAt),
      unavailable_since: iso(this.unavailableSince),
      last_error: this.lastError ?? null,
    }
  }

  /**
   * For /readyz: `notReady` when tokens get 503 because of the store (never synced, or
   * fail_closed while the backend is away); `degraded` when serving a stale set.
   */
  readiness(): { notReady?: string; degraded?: string } {
    const why = this.lastError ? ` (${this.lastError})` : ''
    if (this.state === 'loading') return { notReady: `revocation list not loaded yet${why}` }
    if (this.state !== 'stale') return {}
    const since = new Date(this.unavailableSince ?? Date.now()).toISOString()
    if (this.settings.failClosed) return { notReady: `revocation backend unavailable since ${since}${why}; refusing tokens (fail_closed)` }
    return { degraded: `revocation backend unavailable since ${since}${why}; serving the list synced at ${new Date(this.lastSyncAt ?? 0).toISOString()}` }
  }

  get currentState(): StoreState {
    return this.state
  }

  protected sweep(now: number): void {
    this.set.sweep(now)
  }

  /** The backend's set was loaded in full. */
  protected synced(entries: number): void {
    const was = this.state
    if (was === 'stopped') return
    this.state = 'synced'
    this.lastSyncAt = Date.now()
    this.unavailableSince = undefined
    this.lastError = undefined
    const fields = { backend: this.settings.backend, jti: this.set.jti.size, subjects: this.set.subjects.size, loaded: entries }
    if (was === 'stale') this.log.warn(fields, 'revocation backend back; list resynced')
    else if (was === 'loading') this.log.info(fields, 'revocation list loaded')
  }

  /** The backend was lost (or the file became unreadable). */
  protected unavailable(error: string | undefined): void {
    if (error) this.lastError = error
    if (this.state !== 'synced') return
    this.state = 'stale'
    this.unavailableSince = Date.now()
    this.log.warn(
      { backend: this.settings.backend, error: this.lastError, serving: this.settings.failClosed ? 'nothing (fail_closed: 503)' : 'the last synced list' },
      'revocation backend unavailable',
    )
  }

  /** Connects, loads the whole set, follows changes. Resolves once loaded, or once it is clear it cannot be yet. */
  protected abstract open(): Promise<void>
  protected abstract close(): Promise<void>
  /** Writes one revocation to the backend (and tells the other replicas). */
  protected abstract persist(entry: Revocation): Promise<void>
  /** SET NX: true for the first use of this key within ttlMs; throws when the backend is unavailable. */
  protected abstract claimFirstUse(key: string, ttlMs: number): Promise<boolean>
}

const listeners = new Set<() => void>()

/**
 * Calls `listener` whenever a store of this process gains entries (a revocation made here, one
 * another worker or replica made, a reloaded list file): open WebSocket tunnels check their
 * token again then. Returns the function that stops it.
 */
export function onRevocation(listener: () => void): () => void {
  listeners.add(listener)
  return () => listeners.delete(listener)
}

/** Tells the listeners; a store calls it after adding entries. */
export function changed(): void {
  for (const listener of [...listeners]) listener()
}

/** Replay protection kept in this process, for the memory and file backends. */
export class LocalUses {
  private readonly used = new Map<string, number>()

  claim(key: string, ttlMs: number, now = Date.now()): boolean {
    const until = this.used.get(key)
    if (until !== undefined && now < until) return false
    if (ttlMs > 0) this.used.set(key, now + ttlMs)
    return true
  }

  /** Adds another one's used tokens (the store a reload replaces). */
  takeOver(other: LocalUses): void {
    for (const [key, until] of other.used) if ((this.used.get(key) ?? 0) < until) this.used.set(key, until)
  }

  sweep(now: number): void {
    for (const [key, until] of this.used) if (now >= until) this.used.delete(key)
  }
}

/**
 * Starts the store a reloaded policy brings, when it is not the running one. false (said why,
 * and the new store stopped) when its list could not be loaded: it would refuse every token, so
 * the reload keeps the running policy.
 */
export async function startReloadedStore(running: RevocationStore | undefined, next: RevocationStore | undefined, log: Logger): Promise<boolean> {
  if (!next || next === running) return true
  await next.start()
  if (next.currentState !== 'loading') return true
  log.error({ error: next.stats().last_error }, 'policy reload failed: the new revocation list could not be loaded; keeping the loaded policy')
  void next.stop()
  return false
}
