// An issuer's remote key set, kept warm. What it does that get-jwks does not (see the note in
// docs/design.md): it fetches the whole set at start-up, refreshes it in the background before
// it goes stale (Cache-Control max-age, clamped), refetches on an unknown kid at most once per
// cool-down with every waiting request sharing the one fetch (and, during the cool-down, fetches
// when it ends rather than calling the kid unknown: see `lookup`), keeps the last good keys when
// the IdP is down, slow or answers garbage, and bounds every fetch in time and size. With OIDC
// discovery, each fetch first reads the key set URL from the issuer's discovery document.
import { createHash } from 'node:crypto'
import { redactUrl, redactUrlsIn } from '../http/urls.js'
import { Agent } from 'undici'
import type { Logger } from 'pino'
import { discoverJwksUri, discoveryUrl } from './discovery.js'
import { fetchJson, type FetchSeen } from './fetch_json.js'
import { prepareJwk, type PreparedKey, type VerifyOptions } from './keys.js'

export interface JwksSettings {
  /** The key set URL, or how to find it: `{ discover: issuer }` reads the issuer's discovery document. */
  uri: string | { discover: string }
  timeoutMs: number
  cooldownMs: number
  minAgeMs: number
  maxAgeMs: number
}

export interface KeySetStatus {
  keyCount: number
  lastSuccessAt: number | undefined
  lastFailureAt: number | undefined
  lastError: string | undefined
  /** The key set URL last used (with discovery, the one the document named). */
  jwksUri: string | undefined
  /** The last fetch, whatever its outcome: for the status page. */
  lastFetch: FetchOutcome | undefined
}

export interface FetchOutcome {
  /** When it started (ms since the epoch). */
  at: number
  ok: boolean
  durationMs: number
  /** The last HTTP status answered (the discovery document's when that failed); none without an answer. */
  httpStatus: number | undefined
  error: string | undefined
}

/** A key as the status page shows it: never the key material. */
export interface KeyDetails {
  kid: string | undefined
  kty: string
  crv: string | undefined
  /** The JWK's own `alg`, when it has one. */
  alg: string | undefined
  /** What it may verify: the issuer's algorithms that fit the key. */
  algorithms: string[]
  /** When a fetch first brought it (a refresh that brings it again keeps the time). */
  firstSeenAt: number
}

const MAX_BODY_BYTES = 1024 * 1024
const FIRST_RETRY_MS = 500
/**
 * Unknown kids remembered until a fetch answers for them, and those a fetch found absent. Kids
 * come from tokens, so both sets are bounded: a kid not remembered only gets 503 instead of 401,
 * and a long kid is remembered by its hash.
 */
const MAX_TRACKED_KIDS = 1024
const MAX_TRACKED_KID_LENGTH = 128

/** How an unknown kid is remembered. A key's kid is always looked up first, so a collision could only turn a 401 into a 503. */
function tag(kid: string): string {
  return kid.length <= MAX_TRACKED_KID_LENGTH ? kid : `sha256:${createHash('sha256').update(kid).digest('base64url')}`
}

/**
 * What a token header without a key at hand gets: wait for `fetch` then ask again; `absent` (a
 * fetch started after the kid was first seen succeeded without it: the token's fault, 401); or
 * `retryInMs`, until the fetch that will tell (the IdP may have published it since: 503).
 */
export type KeyMiss = { absent: true } | { retryInMs: number }
export type KeyLookupResult = PreparedKey | KeyMiss

interface Loaded {
  keys: PreparedKey[]
  /** The kids of the entries that were skipped as unusable. */
  skipped: Set<string>
  lifetimeMs: number
}

export class JwksCache {
  private byKid = new Map<string, PreparedKey[]>()
  private keys: PreparedKey[] = []
  private current = new Set<PreparedKey>()
  /** The JWK text each current key was prepared from, to reuse it when a refresh brings it again. */
  private byJwk = new Map<string, PreparedKey>()
  private readonly jwkOf = new WeakMap<PreparedKey, string>()
  private readonly details = new WeakMap<PreparedKey, KeyDetails>()
  private inflight: Promise<void> | undefined
  private lastAttemptAt = -Infinity
  private failures = 0
  private timer: NodeJS.Timeout | undefined
  /** When the timer fires: the next fetch, routine, retry or for unknown kids. */
  private nextFetchDue = Infinity
  /** Unknown kids seen since the last fetch started (as `tag`s): the next fetch answers for them. */
  private pending = new Set<string>()
  /** The kids the fetch in flight answers for. */
  private checking = new Set<string>()
  /**
   * Kids the last successful fetch answered for (or dropped) and did not have; a fetch that
   * fails makes them pending again.
   */
  private absent = new Set<string>()
  /** Kids of the key set's entries that cannot be used (an RSA key too short, use "enc"…). */
  private skipped = new Set<string>()
  private stopped = false
  private readonly agent: Agent
  /** Told of every fetch's outcome (metrics). */
  onFetch: ((ok: boolean) => void) | undefined
  readonly status: KeySetStatus = {
    keyCount: 0,
    lastSuccessAt: undefined,
    lastFailureAt: undefined,
    lastError: undefined,
    jwksUri: undefined,
    lastFetch: undefined,
  }
  /** What the fetch in flight saw: its start and its last HTTP status. */
  private fetching: { at: number; seen: FetchSeen } = { at: 0, seen: {} }

  constructor(
    readonly settings: JwksSettings,
    private readonly allowed: ReadonlySet<string>,
    private readonly verifyOptions: VerifyOptions,
    private readonly log: Logger,
  ) {
    this.agent = new Agent({ connect: { timeout: settings.timeoutMs }, headersTimeout: settings.timeoutMs, bodyTimeout: settings.timeoutMs })
  }

  /** The first fetch. Resolves when it ends, whatever the outcome: an IdP that is down must not stop the gateway. */
  start(): Promise<void> {
    return this.fetchNow()
  }

  holds(key: PreparedKey): boolean {
    return this.current.has(key)
  }

  get hasKeys(): boolean {
    return this.keys.length > 0
  }

  /** The current keys, as the status page shows them. */
  keyDetails(): KeyDetails[] {
    return this.keys.flatMap((key) => this.details.get(key) ?? [])
  }

  /** When the next fetch is due (routine refresh, retry or for unknown kids); undefined when none is scheduled. */
  get nextFetchAt(): number | undefined {
    return Number.isFinite(this.nextFetchDue) ? this.nextFetchDue : undefined
  }

  /** Until when an unknown kid does not start a fetch (the cool-down since the last attempt). */
  get cooldownUntil(): number | undefined {
    return Number.isFinite(this.lastAttemptAt) ? this.lastAttemptAt + this.settings.cooldownMs : undefined
  }

  /**
   * The key for a token header. A token without kid is accepted only when exactly one key
   * could verify its alg, so the choice is never a guess. The same kid may name keys of
   * different types; the alg picks among them.
   */
  find(kid: string | undefined, alg: string): PreparedKey | undefined {
    const candidates = kid === undefined ? this.keys : this.byKid.get(kid)
    if (!candidates) return undefined
    let found: PreparedKey | undefined
    for (const key of candidates) {
      if (!key.algorithms.has(alg)) continue
      if (found) return undefined
      found = key
    }
    return found
  }

  /**
   * The key for a token header, fetching the key set when the kid may have been published since
   * the last fetch. The states of a kid K that no current key has (a token without kid is
   * treated alike when there are no keys at all; with keys, it is simply absent):
   *
   * - a token without kid while there are keys, a kid the keys have but for another alg, or
   *   the kid of an unusable entry of the set: `absent` at once, as a fetch would not change that;
   * - a fetch is in flight: wait for it, then ask again (below, without fetching);
   * - the cool-down since the last fetch attempt has passed: K is remembered as pending, a fetch
   *   starts now (it answers for K) and is waited for, then ask again;
   * - within the cool-down, K in `absent` (a fetch started after K was first seen succeeded
   *   without it, or a refresh dropped it): `absent`, a 401 unknown_kid — the token really names a key the IdP does not
   *   publish;
   * - within the cool-down otherwise (first sight of K, or the last fetch failed, or K came
   *   while a fetch that started before it was in flight): K is remembered as pending and the
   *   next fetch is due at the latest when the cool-down ends (an earlier routine refresh or
   *   back-off retry stays as it is); the answer is `retryInMs` until then: a 503, since the IdP
   *   may have published K since the last fetch, as IdPs that sign with a key as soon as they
   *   publish it do.
   *
   * When a fetch starts, the pending and absent kids become the ones it answers for; when it
   * succeeds, those it lacks are `absent`; when it fails they are all pending again (the IdP may
   * have published them since; so no 401 while it is unreachable). So however many kids come,
   * kids cause at most one fetch per cool-down: one now when the cool-down has passed, or the
   * one due when it ends.
   */
  lookup(kid: string | undefined, alg: string): KeyLookupResult | Promise<KeyLookupResult> {
    const key = this.find(kid, alg)
    if (key) return key
    if (this.known(kid)) return { absent: true }
    if (this.inflight) {
      this.remember(kid)
      return this.inflight.then(() => this.afterFetch(kid, alg))
    }
    if (Date.now() - this.lastAttemptAt >= this.settings.cooldownMs) {
      this.remember(kid)
      return this.fetchNow().then(() => this.afterFetch(kid, alg))
    }
    return this.afterFetch(kid, alg)
  }

  /** The answer without starting a fetch: the key, absent, or how long until the fetch that will tell. */
  private afterFetch(kid: string | undefined, alg: string): KeyLookupResult {
    const key = this.find(kid, alg)
    if (key) return key
    if (this.known(kid) || (kid !== undefined && this.absent.has(tag(kid)))) return { absent: true }
    this.remember(kid)
    // After a failure the back-off retry is already due (within the cool-down): kids do not hurry it.
    if (this.failures === 0) this.fetchBy(this.lastAttemptAt + this.settings.cooldownMs)
    const next = Number.isFinite(this.nextFetchDue) ? this.nextFetchDue - Date.now() : this.settings.cooldownMs
    return { retryInMs: Math.max(0, next) }
  }

  /**
   * Whether the key set speaks of this kid, so another fetch would not change the answer: a
   * token without kid while there are keys (none is a single fit for its alg), a kid whose
   * keys are all of another type than the token's alg, or the kid of a key the set publishes
   * but that cannot be used.
   */
  private known(kid: string | undefined): boolean {
    return kid === undefined ? this.hasKeys : this.byKid.has(kid) || this.skipped.has(kid)
  }

  private remember(kid: string | undefined): void {
    if (kid === undefined || this.checking.has(tag(kid))) return
    if (this.pending.size + this.absent.size < MAX_TRACKED_KIDS) this.pending.add(tag(kid))
  }

  /** Makes sure a fetch is due at `at` at the latest. */
  private fetchBy(at: number): void {
    if (this.nextFetchDue <= at) return
    this.schedule(Math.max(0, at - Date.now()))
  }

  /**
   * A fetch now unless one is in flight or the cool-down since the last attempt has not passed:
   * the fetch to wait for, or undefined.
   */
  refetchForUnknownKid(): Promise<void> | undefined {
    if (this.inflight) return this.inflight
    if (Date.now() - this.lastAttemptAt < this.settings.cooldownMs) return undefined
    return this.fetchNow()
  }

  /** Idempotent: closing the agent a second time would be an unhandled rejection. */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.timer)
    this.nextFetchDue = Infinity
    void this.agent.close()
  }

  private fetchNow(): Promise<void> {
    if (this.inflight) return this.inflight
    this.lastAttemptAt = Date.now()
    this.fetching = { at: this.lastAttemptAt, seen: {} }
    // This fetch answers for the kids seen so far (absent ones again); a kid seen from now on
    // waits for a later one.
    this.checking = new Set([...this.pending, ...this.absent])
    this.pending = new Set()
    this.absent = new Set()
    // The timer's fetch is this one (or superseded by it); the outcome schedules the next.
    clearTimeout(this.timer)
    this.nextFetchDue = Infinity
    this.inflight = this.fetchOnce()
      .then(
        (loaded) => this.succeeded(loaded),
        (err: Error) => this.failed(err),
      )
      .finally(() => {
        this.inflight = undefined
      })
    return this.inflight
  }

  private async fetchOnce(): Promise<Loaded> {
    const { uri: source, timeoutMs } = this.settings
    // Discovery is read on the key set's schedule: a moved jwks_uri is followed at the next refresh.
    const { seen } = this.fetching
    const uri = typeof source === 'string' ? source : await discoverJwksUri(source.discover, this.agent, timeoutMs, seen)
    this.status.jwksUri = uri
    const { body, headers } = await fetchJson(uri, this.agent, timeoutMs, MAX_BODY_BYTES, 'application/json, application/jwk-set+json', seen)
    const list = (body as { keys?: unknown } | null)?.keys
    if (!Array.isArray(list)) throw new Error('response has no "keys" array')
    const keys: PreparedKey[] = []
    const skipped = new Set<string>()
    for (const jwk of list) {
      // An unchanged key keeps its prepared verifier, and with it the tokens cached under it.
      const same = typeof jwk === 'object' && jwk !== null ? this.byJwk.get(JSON.stringify(jwk)) : undefined
      if (same) {
        keys.push(same)
        continue
      }
      const prepared = typeof jwk === 'object' && jwk !== null ? prepareJwk(jwk, this.allowed, this.verifyOptions) : { unusable: 'not an object' }
      if ('unusable' in prepared) {
        const kid = (jwk as { kid?: unknown })?.kid
        if (typeof kid === 'string' && skipped.size < MAX_TRACKED_KIDS) skipped.add(kid)
        this.log.debug({ jwks_uri: redactUrl(uri), kid, why: prepared.unusable }, 'skipping key')
      } else {
        keys.push(prepared)
        this.jwkOf.set(prepared, JSON.stringify(jwk))
        this.details.set(prepared, keyDetails(jwk as Record<string, unknown>, prepared))
      }
    }
    if (keys.length === 0) throw new Error('no usable signing key in the key set')
    return { keys, skipped, lifetimeMs: this.lifetime(headers['cache-control']) }
  }

  private succeeded({ keys, skipped, lifetimeMs }: Loaded): void {
    const byKid = new Map<string, PreparedKey[]>()
    for (const key of keys) {
      if (key.kid === undefined) continue
      const list = byKid.get(key.kid)
      if (list) list.push(key)
      else byKid.set(key.kid, [key])
    }
    // One assignment each: a request sees the old set or the new one, never a mix.
    this.keys = keys
    const dropped = this.byKid
    this.byKid = byKid
    this.current = new Set(keys)
    this.byJwk = new Map(keys.map((k) => [this.jwkOf.get(k)!, k]))
    // The kids this fetch answered for, and those it dropped, are absent unless it has them.
    const tags = new Set([...byKid.keys()].map(tag))
    for (const kid of [...this.checking, ...[...dropped.keys()].map(tag)]) {
      if (!tags.has(kid) && this.absent.size < MAX_TRACKED_KIDS) this.absent.add(kid)
    }
    this.checking = new Set()
    this.skipped = skipped
    this.failures = 0
    this.onFetch?.(true)
    this.status.keyCount = keys.length
    this.status.lastSuccessAt = Date.now()
    this.status.lastFetch = this.outcome(undefined)
    // Refresh ahead of expiry so requests never wait on a routine refresh: the log says when that
    // is, and the lifetime it came from.
    const refreshInMs = Math.max(this.settings.minAgeMs, Math.floor(lifetimeMs * 0.8))
    this.log.info({ ...this.where(), keys: keys.length, refresh_in_ms: refreshInMs, lifetime_ms: lifetimeMs }, 'key set loaded')
    this.schedule(refreshInMs)
  }

  private failed(err: Error): void {
    // Nothing is known of the kids it was to answer for: the next fetch answers for them.
    for (const kid of this.checking) this.pending.add(kid)
    this.checking = new Set()
    this.failures++
    this.onFetch?.(false)
    this.status.lastFailureAt = Date.now()
    this.status.lastError = err.name === 'TimeoutError' || err.name === 'AbortError' ? 'timed out' : redactUrlsIn(err.message)
    this.status.lastFetch = this.outcome(this.status.lastError)
    this.log.warn({ ...this.where(), error: this.status.lastError, keeping_keys: this.keys.length }, 'key set fetch failed')
    // Back off from half a second up to the cool-down, so a gateway that started while the
    // IdP was down recovers soon after it comes back, without hammering it meanwhile.
    const backoff = Math.min(FIRST_RETRY_MS * 2 ** (this.failures - 1), Math.max(this.settings.cooldownMs, FIRST_RETRY_MS))
    this.schedule(backoff)
  }

  private outcome(error: string | undefined): FetchOutcome {
    const { at, seen } = this.fetching
    return { at, ok: error === undefined, durationMs: Date.now() - at, httpStatus: seen.status, error }
  }

  /** Where the keys come from, for log lines. */
  private where(): { jwks_uri: string | undefined; discovery?: string } {
    const { uri } = this.settings
    // As every URL printed: without user info or secret parameters (http/urls.ts).
    if (typeof uri === 'string') return { jwks_uri: redactUrl(uri) }
    return { jwks_uri: this.status.jwksUri === undefined ? undefined : redactUrl(this.status.jwksUri), discovery: redactUrl(discoveryUrl(uri.discover)) }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    this.nextFetchDue = Date.now() + delayMs
    this.timer = setTimeout(() => void this.fetchNow(), delayMs)
    this.timer.unref()
  }

  /** Cache-Control max-age clamped to [min_age, max_age]; max_age when the IdP says nothing. */
  private lifetime(cacheControl: string | string[] | undefined): number {
    const header = Array.isArray(cacheControl) ? cacheControl.join(',') : (cacheControl ?? '')
    const maxAge = /(?:^|[,\s])max-age=(\d+)/i.exec(header)
    const ms = maxAge ? Number(maxAge[1]) * 1000 : this.settings.maxAgeMs
    return Math.min(Math.max(ms, this.settings.minAgeMs), this.settings.maxAgeMs)
  }
}

function keyDetails(jwk: Record<string, unknown>, key: PreparedKey): KeyDetails {
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined)
  return { kid: key.kid, kty: String(jwk.kty), crv: text(jwk.crv), alg: text(jwk.alg), algorithms: [...key.algorithms], firstSeenAt: Date.now() }
}
