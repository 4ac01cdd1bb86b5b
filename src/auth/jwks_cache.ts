// An issuer's remote key set, kept warm. What it does that get-jwks does not (see the note in
// docs/design.md): it fetches the whole set at start-up, refreshes it in the background before
// it goes stale (Cache-Control max-age, clamped), refetches on an unknown kid at most once per
// cool-down with every waiting request sharing the one fetch, keeps the last good keys when the
// IdP is down, slow or answers garbage, and bounds every fetch in time and size. With OIDC
// discovery, each fetch first reads the key set URL from the issuer's discovery document.
import { redactUrl, redactUrlsIn } from '../http/urls.js'
import { Agent } from 'undici'
import type { Logger } from 'pino'
import { discoverJwksUri, discoveryUrl } from './discovery.js'
import { fetchJson } from './fetch_json.js'
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
}

const MAX_BODY_BYTES = 1024 * 1024
const FIRST_RETRY_MS = 500

export class JwksCache {
  private byKid = new Map<string, PreparedKey[]>()
  private keys: PreparedKey[] = []
  private current = new Set<PreparedKey>()
  /** The JWK text each current key was prepared from, to reuse it when a refresh brings it again. */
  private byJwk = new Map<string, PreparedKey>()
  private readonly jwkOf = new WeakMap<PreparedKey, string>()
  private inflight: Promise<void> | undefined
  private lastAttemptAt = -Infinity
  private failures = 0
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly agent: Agent
  /** Told of every fetch's outcome (metrics). */
  onFetch: ((ok: boolean) => void) | undefined
  readonly status: KeySetStatus = { keyCount: 0, lastSuccessAt: undefined, lastFailureAt: undefined, lastError: undefined, jwksUri: undefined }

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
   * Called when a token names a kid we do not have: the IdP may have rotated. Returns the fetch
   * to wait for, or undefined when the cool-down forbids another, so random kids cannot make us
   * hammer the IdP.
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
    void this.agent.close()
  }

  private fetchNow(): Promise<void> {
    if (this.inflight) return this.inflight
    this.lastAttemptAt = Date.now()
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

  private async fetchOnce(): Promise<{ keys: PreparedKey[]; lifetimeMs: number }> {
    const { uri: source, timeoutMs } = this.settings
    // Discovery is read on the key set's schedule: a moved jwks_uri is followed at the next refresh.
    const uri = typeof source === 'string' ? source : await discoverJwksUri(source.discover, this.agent, timeoutMs)
    this.status.jwksUri = uri
    const { body, headers } = await fetchJson(uri, this.agent, timeoutMs, MAX_BODY_BYTES, 'application/json, application/jwk-set+json')
    const list = (body as { keys?: unknown } | null)?.keys
    if (!Array.isArray(list)) throw new Error('response has no "keys" array')
    const keys: PreparedKey[] = []
    for (const jwk of list) {
      // An unchanged key keeps its prepared verifier, and with it the tokens cached under it.
      const same = typeof jwk === 'object' && jwk !== null ? this.byJwk.get(JSON.stringify(jwk)) : undefined
      if (same) {
        keys.push(same)
        continue
      }
      const prepared = typeof jwk === 'object' && jwk !== null ? prepareJwk(jwk, this.allowed, this.verifyOptions) : { unusable: 'not an object' }
      if ('unusable' in prepared) this.log.debug({ jwks_uri: redactUrl(uri), kid: (jwk as { kid?: unknown })?.kid, why: prepared.unusable }, 'skipping key')
      else {
        keys.push(prepared)
        this.jwkOf.set(prepared, JSON.stringify(jwk))
      }
    }
    if (keys.length === 0) throw new Error('no usable signing key in the key set')
    return { keys, lifetimeMs: this.lifetime(headers['cache-control']) }
  }

  private succeeded({ keys, lifetimeMs }: { keys: PreparedKey[]; lifetimeMs: number }): void {
    const byKid = new Map<string, PreparedKey[]>()
    for (const key of keys) {
      if (key.kid === undefined) continue
      const list = byKid.get(key.kid)
      if (list) list.push(key)
      else byKid.set(key.kid, [key])
    }
    // One assignment each: a request sees the old set or the new one, never a mix.
    this.keys = keys
    this.byKid = byKid
    this.current = new Set(keys)
    this.byJwk = new Map(keys.map((k) => [this.jwkOf.get(k)!, k]))
    this.failures = 0
    this.onFetch?.(true)
    this.status.keyCount = keys.length
    this.status.lastSuccessAt = Date.now()
    this.log.info({ ...this.where(), keys: keys.length, refresh_in_ms: lifetimeMs }, 'key set loaded')
    // Refresh ahead of expiry so requests never wait on a routine refresh.
    this.schedule(Math.max(this.settings.minAgeMs, Math.floor(lifetimeMs * 0.8)))
  }

  private failed(err: Error): void {
    this.failures++
    this.onFetch?.(false)
    this.status.lastFailureAt = Date.now()
    this.status.lastError = err.name === 'TimeoutError' || err.name === 'AbortError' ? 'timed out' : redactUrlsIn(err.message)
    this.log.warn({ ...this.where(), error: this.status.lastError, keeping_keys: this.keys.length }, 'key set fetch failed')
    // Back off from half a second up to the cool-down, so a gateway that started while the
    // IdP was down recovers soon after it comes back, without hammering it meanwhile.
    const backoff = Math.min(FIRST_RETRY_MS * 2 ** (this.failures - 1), Math.max(this.settings.cooldownMs, FIRST_RETRY_MS))
    this.schedule(backoff)
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
