// The redis backend: the fleet's shared list. Every replica keeps the whole list in memory,
// loads it at start, and follows changes through pub/sub, so a revocation written anywhere
// applies everywhere within milliseconds; a request never waits for Redis (except on
// replay_protection routes, one SET NX).
//
// Keys (prefix `jwtgate:revocation:` by default), each with a TTL so Redis cleans up itself:
//   <prefix>jti:<jti>   "<expiresAt ms>"               until the token's exp + margin
//   <prefix>sub:<sub>   "<before s> <expiresAt ms>"    until before + max_token_lifetime + margin
//   <prefix>iss-jti:<json [iss, jti]>  as jti:, for the tokens of one issuer only
//   <prefix>iss-sub:<json [iss, sub]>  as sub:, for one issuer's subject
//   <prefix>used:<json [iss, jti]>  "1"                 replay protection, until exp + margin
//   <prefix>dpop:<jkt>:<jti>  "1"                      a used DPoP proof, while its iat is acceptable
// (jti: and sub: keys, the layout before entries had an issuer, apply to every issuer.)
// and the channel <prefix>events, on which each write is announced.
//
// Pub/sub messages sent while a replica is disconnected are lost, so after every (re)connect
// the subscriber subscribes first and then the whole list is read again (SCAN + MGET) and
// merged in. Entries are only ever added (and expire), so merging is always safe: the set a
// replica holds is never weaker than what Redis said at any point.
import type { Redis as RedisClient, RedisOptions } from 'ioredis'
import { MemoryProofReplay, type ProofReplay } from '../auth/replay.js'
import { deny, type Denial } from '../http/denial.js'
import { checkIssuer } from './set.js'
import { changed, RevocationStore, type Revocation } from './store.js'

// Writes keep the later of two values (a revocation is never weakened), extend the TTL, and
// announce only real changes.
const REVOKE_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current then
  local value = tonumber(string.match(current, '^[^ ]+'))
  if value and value >= tonumber(ARGV[3]) then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl >= 0 and ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`

const HEARTBEAT_MS = 1000
const SCAN_COUNT = 1000
/** Reconnect backoff: 50 ms doubling to 1 s, with jitter so a fleet does not reconnect in step. */
const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 5), 1000) * (0.75 + Math.random() / 2)

export class RedisStore extends RevocationStore {
  private client: RedisClient | undefined
  private subscriber: RedisClient | undefined
  /** Bumped on every subscriber (re)connect and loss: an older resync must not mark the set synced. */
  private generation = 0
  private heartbeat: NodeJS.Timeout | undefined
  private retry: NodeJS.Timeout | undefined
  private firstOutcome: (() => void) | undefined
  private replay: ProofReplay | undefined

  private get keys() {
    const prefix = this.settings.redis!.keyPrefix
    return {
      jti: `${prefix}jti:`,
      sub: `${prefix}sub:`,
      issJti: `${prefix}iss-jti:`,
      issSub: `${prefix}iss-sub:`,
      used: `${prefix}used:`,
      dpop: `${prefix}dpop:`,
      channel: `${prefix}events`,
    }
  }

  private async options(name: string): Promise<[typeof import('ioredis').Redis, RedisOptions]> {
    // Loaded only when a redis store starts: `validate`, `explain` and `test` never need it.
    const { Redis } = await import('ioredis')
    const timeoutMs = this.settings.redis!.timeoutMs
    return [
      Redis,
      {
        connectionName: name,
        connectTimeout: timeoutMs,
        commandTimeout: timeoutMs,
        // Fail at once while disconnected: a request must never queue behind a reconnect.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResubscribe: false,
        retryStrategy,
      },
    ]
  }

  /** The command connection, made on first use (the CLI writes without starting the store). */
  private async commands(): Promise<RedisClient> {
    if (this.client) return this.client
    const [Redis, options] = await this.options('jwtgate')
    if (this.client) return this.client
    // Stopped while ioredis was loading: a client made now would never be closed, and its
    // reconnect attempts would keep the process alive.
    if (this.currentState === 'stopped') throw new Error('the revocation store is stopped')
    const client = new Redis(this.settings.redis!.url, options)
    client.on('error', (err: Error) => {
      this.lastError = err.message
    })
    this.client = client
    if (client.status !== 'ready') {
      await new Promise<void>((resolve) => {
        const done = () => {
          client.off('ready', done)
          client.off('error', done)
          resolve()
        }
        client.once('ready', done)
        client.once('error', done)
      })
    }
    return client
  }

  protected async open(): Promise<void> {
    const first = new Promise<void>((resolve) => {
      this.firstOutcome = resolve
    })
    const [Redis, options] = await this.options('jwtgate-subscriber')
    if (this.currentState === 'stopped') return
    const subscriber = new Redis(this.settings.redis!.url, options)
    this.subscriber = subscriber
    subscriber.on('error', (err: Error) => {
      this.lastError = err.message
      if (this.state === 'loading') this.firstOutcome?.()
    })
    subscriber.on('ready', () => void this.onSubscriberReady(subscriber))
    subscriber.on('close', () => this.onSubscriberLost())
    subscriber.on('message', (_channel: string, message: string) => this.onMessage(message))
    // Its failure is the subscriber's too, which reports it.
    this.commands().catch(() => {})
    this.heartbeat = setInterval(() => {
      // A connection that died without a close (a network partition) is noticed here.
      if (subscriber.status !== 'ready') return
      subscriber.ping().catch((err: Error) => {
        if (subscriber.status !== 'ready') return
        this.lastError = `no answer to PING: ${err.message}`
        this.onSubscriberLost()
        subscriber.disconnect(true)
      })
    }, HEARTBEAT_MS)
    this.heartbeat.unref()
    // Start-up waits for the first full load, or for the first failure to reach Redis; then the
    // gateway listens anyway and answers 503 until the list is loaded.
    const cap = setTimeout(() => this.firstOutcome?.(), Math.max(5000, 5 * this.settings.redis!.timeoutMs))
    await first
    clearTimeout(cap)
  }

  protected async close(): Promise<void> {
    this.generation++
    clearInterval(this.heartbeat)
    clearTimeout(this.retry)
    this.firstOutcome?.()
    this.subscriber?.disconnect()
    this.client?.disconnect()
  }

  private async onSubscriberReady(subscriber: RedisClient): Promise<void> {
    const generation = ++this.generation
    try {
      // Subscribed before reading, so nothing written during the read is missed.
      await subscriber.subscribe(this.keys.channel)
    } catch (err) {
      this.lastError = (err as Error).message
      if (subscriber.status === 'ready') subscriber.disconnect(true)
      return
    }
    await this.resync(generation, 0)
  }

  private onSubscriberLost(): void {
    this.generation++
    clearTimeout(this.retry)
    if (this.state === 'stopped') return
    this.unavailable(this.lastError ?? 'connection to redis closed')
    if (this.state === 'loading') this.firstOutcome?.()
  }

  /** Reads the whole list and merges it in; retried with backoff while the subscriber stays up. */
  private async resync(generation: number, attempt: number): Promise<void> {
    if (generation !== this.generation || this.state === 'stopped') return
    try {
      const client = await this.commands()
      const loaded = await this.loadAll(client)
      if (generation !== this.generation || this.currentState === 'stopped') return
      this.synced(loaded)
      if (loaded > 0) changed()
      this.firstOutcome?.()
    } catch (err) {
      this.lastError = (err as Error).message
      if (generation !== this.generation) return
      this.retry = setTimeout(() => void this.resync(generation, attempt + 1), Math.min(100 * 2 ** attempt, 2000))
      this.retry.unref()
    }
  }

  private async loadAll(client: RedisClient): Promise<number> {
    const { jti, sub, issJti, issSub } = this.keys
    let loaded = 0
    const now = Date.now()
    for (const prefix of [jti, sub, issJti, issSub]) {
      const kind = prefix === jti || prefix === issJti ? 'jti' : 'sub'
      const scoped = prefix === issJti || prefix === issSub
      const skip = Buffer.byteLength(prefix)
      let cursor = '0'
      // SCAN ends when the cursor comes back to 0; each step is bounded by the command timeout.
      // Buffers, not strings: half the parsing time, and each id becomes a string of its own
      // rather than a slice that keeps the whole key alive (5 MB per 100,000 entries).
      do {
        const [next, keys] = await client.scanBuffer(cursor, 'MATCH', `${globEscape(prefix)}*`, 'COUNT', SCAN_COUNT)
        cursor = next.toString()
        if (keys.length === 0) continue
        const values = await client.mgetBuffer(keys)
        for (let i = 0; i < keys.length; i++) {
          const value = values[i]
          if (!value) continue
          const name = keys[i]!.toString('utf8', skip)
          const scope: { id: string; iss?: string } | undefined = scoped ? scopedName(name) : { id: name }
          if (scope && this.apply(kind, scope.id, value.toString('latin1'), now, scope.iss)) loaded++
        }
      } while (cursor !== '0')
    }
    return loaded
  }

  /** One entry as stored (or announced) into the in-memory set. */
  private apply(kind: 'jti' | 'sub', id: string, value: string, now: number, iss?: string): boolean {
    if (kind === 'jti') {
      const expiresAt = Number(value)
      if (!Number.isFinite(expiresAt) || expiresAt <= now) return false
      this.set.addJti(id, expiresAt, iss)
      return true
    }
    const [before, expiresAt] = value.split(' ').map(Number)
    if (!Number.isFinite(before) || !Number.isFinite(expiresAt) || expiresAt! <= now) return false
    this.set.addSubject(id, before!, expiresAt!, iss)
    return true
  }

  private onMessage(message: string): void {
    let parsed: unknown
    try {
      parsed = JSON.parse(message)
    } catch {
      return
    }
    if (!Array.isArray(parsed) || (parsed[0] !== 'jti' && parsed[0] !== 'sub') || typeof parsed[1] !== 'string' || typeof parsed[2] !== 'string') return
    // A fourth element: the issuer of a scoped entry.
    const iss = parsed[3]
    if (iss !== undefined && typeof checkIssuer(iss) === 'string') return
    if (this.apply(parsed[0], parsed[1], parsed[2], Date.now(), typeof iss === 'string' ? iss : undefined)) changed()
  }

  protected async persist(entry: Revocation): Promise<void> {
    const ttl = Math.ceil(entry.expiresAt - Date.now())
    if (ttl <= 0) return // already past: nothing could use the token any more
    const client = await this.commands()
    const { jti, sub, issJti, issSub, channel } = this.keys
    const value = entry.kind === 'jti' ? String(entry.expiresAt) : `${entry.before} ${entry.expiresAt}`
    const rank = entry.kind === 'jti' ? entry.expiresAt : entry.before
    const key =
      entry.iss === undefined ? (entry.kind === 'jti' ? jti : sub) + entry.id : (entry.kind === 'jti' ? issJti : issSub) + JSON.stringify([entry.iss, entry.id])
    const message = JSON.stringify(entry.iss === undefined ? [entry.kind, entry.id, value] : [entry.kind, entry.id, value, entry.iss])
    await client.eval(REVOKE_SCRIPT, 1, key, value, ttl, rank, channel, message)
  }

  /**
   * Used DPoP proofs in Redis, shared by every replica: one SET NX per proof. While Redis is
   * away, fail_closed refuses proofs (503); serve_stale remembers them in this process only.
   */
  override proofReplay(maxEntries: number): ProofReplay {
    if (this.replay) return this.replay
    const local = new MemoryProofReplay(maxEntries)
    const away = (key: string, ttlMs: number, now: number): boolean | Denial =>
      this.settings.failClosed ? REPLAY_UNAVAILABLE : local.firstUse(key, ttlMs, now)
    this.replay = {
      firstUse: (key, ttlMs, now) => {
        const client = this.client
        if (client?.status !== 'ready') return away(key, ttlMs, now)
        return client.set(this.keys.dpop + key, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX').then(
          (reply) => reply === 'OK',
          (err: Error) => {
            this.log.warn({ error: err.message }, 'DPoP replay cache: redis did not answer')
            return away(key, ttlMs, now)
          },
        )
      },
    }
    return this.replay
  }

  protected async claimFirstUse(key: string, ttlMs: number): Promise<boolean> {
    const client = this.client
    if (client?.status !== 'ready') throw new Error(`redis is not connected${this.lastError ? ` (${this.lastError})` : ''}`)
    return (await client.set(this.keys.used + key, '1', 'PX', Math.ceil(ttlMs), 'NX')) === 'OK'
  }
}

const REPLAY_UNAVAILABLE: Denial = Object.freeze(deny('proof_replay_unavailable', 'the DPoP proof replay cache is unavailable; try again later'))

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

/** The issuer and id of an iss-jti: or iss-sub: key's name (a JSON pair); undefined when malformed. */
function scopedName(name: string): { id: string; iss: string } | undefined {
  try {
    const pair: unknown = JSON.parse(name)
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[1] !== 'string' || typeof pair[0] !== 'string') return undefined
    const scope = checkIssuer(pair[0])
    if (typeof scope === 'string' || scope.iss === undefined) return undefined
    return { iss: scope.iss, id: pair[1] }
  } catch {
    return undefined
  }
}
