// Revocation on the admin listener:
//   POST /revocations          {"jti": "…", "exp": 1767225600, "iss": "…"} or {"sub": "…", "before": 1767225600, "iss": "…"}
//                              ("iss": the issuer the entry applies to; "*" or absent: every issuer)
//                              with Authorization: Bearer <revocation.admin_token>; 404 unless configured
//   GET  /revocations/stats    counts, last sync, backend state; 404 without a revocation: section
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { CompiledPolicy } from '../policy/compile.js'
import { ALL_ISSUERS, checkIssuer } from '../revocation/set.js'
import type { Revocation, RevocationStore } from '../revocation/store.js'

export { checkIssuer }

export type RevokeBody = ({ jti: string; exp?: number } | { sub: string; before?: number }) & { iss?: string }

/**
 * Stores a checked revocation and returns it; throws when it was not stored everywhere it must
 * be (the backend, or with `workers: N` every worker), which the API answers with 503.
 */
export type Revoke = (store: RevocationStore, body: RevokeBody) => Promise<Revocation>

/** One process: its own store (and through it the backend). */
export const revokeHere: Revoke = (store, body) =>
  'jti' in body ? store.revokeJti(body.jti, body.exp, body.iss) : store.revokeSubject(body.sub, body.before, body.iss)

const MAX_ID_LENGTH = 1024

export function revocationRoutes(app: FastifyInstance, policy: () => CompiledPolicy, revoke: Revoke = revokeHere): void {
  app.post(
    '/revocations',
    {
      bodyLimit: 8192,
      // Checked before the body is read: an unauthenticated caller gets nothing parsed.
      onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
        const digest = policy().revocation?.adminTokenDigest
        if (!digest) {
          return reply.code(404).send({ error: 'not_found', message: 'revocation through the admin API is off; set revocation.admin_token in the policy' })
        }
        if (!authorized(request.headers.authorization, digest)) {
          return reply
            .code(401)
            .header('www-authenticate', 'Bearer realm="jwtgate-admin"')
            .send({ error: 'unauthorized', message: 'the admin bearer token is missing or wrong' })
        }
      },
    },
    async (request, reply) => {
      const store = policy().revocation?.store
      if (!store) return reply.code(404).send({ error: 'not_found', message: 'the policy has no revocation: section' })
      const body = checkBody(request.body)
      if (typeof body === 'string') return reply.code(400).send({ error: 'bad_request', message: body })
      let entry: Revocation
      try {
        entry = await revoke(store, body)
      } catch (err) {
        request.log.warn({ error: (err as Error).message }, 'revocation not stored')
        return reply
          .code(503)
          .header('retry-after', '5')
          .send({ error: 'revocation_unavailable', message: `the revocation backend did not take it: ${(err as Error).message}` })
      }
      request.log.info({ revoked: entry.kind, id: entry.id, kept_until: new Date(entry.expiresAt).toISOString() }, 'token revoked')
      return reply.code(201).send(describeRevocation(entry))
    },
  )

  app.get('/revocations/stats', async (_request, reply) => {
    const store = policy().revocation?.store
    if (!store) return reply.code(404).send({ error: 'not_found', message: 'the policy has no revocation: section' })
    return reply.header('cache-control', 'no-store').send(store.stats())
  })
}

export function describeRevocation(entry: Revocation): Record<string, unknown> {
  const keptUntil = new Date(entry.expiresAt).toISOString()
  const iss = entry.iss ?? ALL_ISSUERS
  if (entry.kind === 'jti') return { revoked: 'jti', jti: entry.id, ...(entry.exp !== undefined ? { exp: entry.exp } : {}), iss, kept_until: keptUntil }
  return { revoked: 'sub', sub: entry.id, before: entry.before, iss, kept_until: keptUntil }
}

/** Compares digests, so the time taken says nothing about the token, not even its length. */
function authorized(header: string | undefined, digest: Buffer): boolean {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header)
  const given = createHash('sha256')
    .update(match?.[1] ?? '')
    .digest()
  return timingSafeEqual(given, digest) && match !== null
}

function checkBody(body: unknown): RevokeBody | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return 'the body must be a JSON object: {"jti": "…", "exp": 1767225600} or {"sub": "…", "before": 1767225600}'
  const b = body as Record<string, unknown>
  const seconds = (name: string): number | string | undefined => {
    const v = b[name]
    if (v === undefined) return undefined
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : `${name} must be a positive number of seconds since 1970`
  }
  const id = (name: string): string | undefined => {
    const v = b[name]
    return typeof v === 'string' && v !== '' && v.length <= MAX_ID_LENGTH
      ? undefined
      : `${name} must be a non-empty string of at most ${MAX_ID_LENGTH} characters${name === 'jti' ? ' (or a number)' : ''}`
  }
  const unknown = (allowed: string[]) => Object.keys(b).find((k) => !allowed.includes(k))
  const scope = checkIssuer(b.iss)
  if (typeof scope === 'string') return scope
  const iss = scope.iss !== undefined ? { iss: scope.iss } : {}
  if ('jti' in b) {
    const extra = unknown(['jti', 'exp', 'iss'])
    if (extra) return `unknown field "${extra}": give {"jti", "exp", "iss"} or {"sub", "before", "iss"}`
    // A token's numeric jti is compared by its decimal form (../revocation/set.ts jtiOf), so a
    // number given here is taken in that form: `{"jti": 42}` revokes the token with jti 42.
    if (typeof b.jti === 'number' && Number.isFinite(b.jti)) b.jti = String(b.jti)
    const exp = seconds('exp')
    return id('jti') ?? (typeof exp === 'string' ? exp : { jti: b.jti as string, ...(exp !== undefined ? { exp } : {}), ...iss })
  }
  if ('sub' in b) {
    const extra = unknown(['sub', 'before', 'iss'])
    if (extra) return `unknown field "${extra}": give {"jti", "exp", "iss"} or {"sub", "before", "iss"}`
    const before = seconds('before')
    return id('sub') ?? (typeof before === 'string' ? before : { sub: b.sub as string, ...(before !== undefined ? { before } : {}), ...iss })
  }
  return 'give {"jti": "…"} (optionally with "exp") or {"sub": "…"} (optionally with "before")'
}
