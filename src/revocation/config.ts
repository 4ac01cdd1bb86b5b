// The policy's `revocation:` section → store settings, the admin token, and the store itself
// (built once; a reload keeps the previous policy's store when its settings are unchanged).
import { createHash } from 'node:crypto'
import path from 'node:path'
import type { Logger } from 'pino'
import { durationMs } from '../policy/duration.js'
import { readSecretBesidePolicy, type PolicyFiles } from '../policy/policy_files.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import { RevocationSchema, type RevocationDocument } from '../policy/schema.js'
import { FileStore } from './file.js'
import { MemoryStore } from './memory.js'
import { RedisStore } from './redis.js'
import type { RevocationSettings, RevocationStore } from './store.js'

export interface CompiledRevocation {
  readonly store: RevocationStore
  /** sha256 of the admin API's bearer token; null: POST /revocations is off. */
  readonly adminTokenDigest: Buffer | null
  /**
   * How long past a token's exp its revocation is kept: the largest clock_skew of the policy's
   * issuers, since a token is accepted until exp + skew. A new store has it from the start; a
   * store kept from the running policy gets it when this policy is committed (commitRevocation).
   */
  readonly marginMs: number
}

const DEFAULT = defaultsOf(RevocationSchema, ['on_backend_unavailable', 'max_token_lifetime'])
const REDIS_DEFAULT = defaultsOf(RevocationSchema.properties.redis, ['key_prefix', 'timeout'])
const MIN_ADMIN_TOKEN_BYTES = 16

const builtFrom = new WeakMap<RevocationStore, string>()

/**
 * Checks the section (saying each problem at its place) and returns the store to use:
 * `previous` when its settings are the same, a new, not yet started one otherwise. Nothing of
 * `previous` is changed: the running policy may still be using it.
 */
export function compileRevocation(
  spec: RevocationDocument,
  files: PolicyFiles,
  log: Logger,
  problem: OnProblem,
  previous: CompiledRevocation | null | undefined,
  marginMs: number,
): CompiledRevocation | undefined {
  const at = (...where: Array<string | number>): DocPath => ['revocation', ...where]
  let ok = true
  const fail = (where: DocPath, message: string) => {
    problem(where, message)
    ok = false
  }

  const settings: RevocationSettings = {
    backend: spec.backend,
    failClosed: (spec.on_backend_unavailable ?? DEFAULT.on_backend_unavailable) === 'fail_closed',
    maxTokenLifetimeMs: durationMs(spec.max_token_lifetime ?? DEFAULT.max_token_lifetime),
  }
  if (settings.maxTokenLifetimeMs <= 0) fail(at('max_token_lifetime'), 'max_token_lifetime must be more than 0')

  if (spec.backend !== 'file' && spec.file !== undefined) fail(at('file'), `file: is only used with backend: file (the backend is ${spec.backend})`)
  if (spec.backend !== 'redis' && spec.redis !== undefined) fail(at('redis'), `redis: is only used with backend: redis (the backend is ${spec.backend})`)
  if (spec.backend === 'file') {
    if (spec.file === undefined) fail(at('backend'), 'backend: file needs file: { path: … }')
    else settings.file = { path: path.resolve(path.dirname(files.file), spec.file.path) }
  }
  if (spec.backend === 'redis') {
    if (spec.redis === undefined) fail(at('backend'), 'backend: redis needs redis: { url: … }')
    else {
      if (!isRedisUrl(spec.redis.url)) fail(at('redis', 'url'), 'redis.url must be a redis:// or rediss:// URL, as in redis://127.0.0.1:6379/0')
      const timeoutMs = durationMs(spec.redis.timeout ?? REDIS_DEFAULT.timeout)
      if (timeoutMs <= 0) fail(at('redis', 'timeout'), 'redis.timeout must be more than 0')
      settings.redis = { url: spec.redis.url, keyPrefix: spec.redis.key_prefix ?? REDIS_DEFAULT.key_prefix, timeoutMs }
    }
  }

  let adminTokenDigest: Buffer | null = null
  if (spec.admin_token !== undefined && spec.admin_token_file !== undefined) {
    fail(at('admin_token_file'), 'give admin_token or admin_token_file, not both')
  } else if (spec.admin_token !== undefined || spec.admin_token_file !== undefined) {
    const where = at(spec.admin_token !== undefined ? 'admin_token' : 'admin_token_file')
    let token: string | undefined = spec.admin_token
    if (spec.admin_token_file !== undefined) {
      token = readSecretBesidePolicy(files, spec.admin_token_file, where, fail, 'admin_token_file')
    }
    if (token !== undefined) {
      if (Buffer.byteLength(token) < MIN_ADMIN_TOKEN_BYTES)
        fail(where, `the admin token must be at least ${MIN_ADMIN_TOKEN_BYTES} bytes; it has ${Buffer.byteLength(token)}`)
      else adminTokenDigest = createHash('sha256').update(token).digest()
    }
  }
  if (!ok) return undefined

  const key = JSON.stringify(settings)
  let store = previous?.store
  if (!store || builtFrom.get(store) !== key) {
    store = createStore(settings, log)
    store.marginMs = marginMs
    builtFrom.set(store, key)
  }
  return { store, adminTokenDigest, marginMs }
}

/**
 * Makes the store serve the committed policy's margin: call once the policy replaced the
 * running one (a rejected reload never gets here, so the running store keeps its margin).
 */
export function commitRevocation(revocation: CompiledRevocation | null): void {
  if (revocation) revocation.store.marginMs = revocation.marginMs
}

/**
 * What a reload does with the running store's entries, just before the new policy takes over
 * (nothing may run between this and the switch): a new memory store takes the running memory
 * store's entries over; a reload that leaves the memory backend for another backend (or for no
 * revocation at all) loses them, and says so loudly. Returns how many entries were dropped.
 */
export function handOverRevocations(running: RevocationStore | undefined, next: RevocationStore | undefined, log: Logger): number {
  if (!running || running === next || running.settings.backend !== 'memory') return 0
  const held = running.entries()
  if (next?.settings.backend === 'memory') {
    ;(next as MemoryStore).takeOver(running)
    return 0
  }
  if (held.length > 0) {
    log.error(
      { component: 'revocation', dropped: held.length, from: 'memory', to: next?.settings.backend ?? 'none' },
      `policy reload drops ${held.length} revocations of the memory backend: the new policy ${next ? `uses backend: ${next.settings.backend}` : 'has no revocation: section'}; the revoked tokens are accepted again`,
    )
  }
  return held.length
}

export function createStore(settings: RevocationSettings, log: Logger): RevocationStore {
  const child = log.child({ component: 'revocation' })
  switch (settings.backend) {
    case 'memory':
      return new MemoryStore(settings, child)
    case 'file':
      return new FileStore(settings, child)
    case 'redis':
      return new RedisStore(settings, child)
  }
}

function isRedisUrl(text: string): boolean {
  try {
    const url = new URL(text)
    return (url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== ''
  } catch {
    return false
  }
}
