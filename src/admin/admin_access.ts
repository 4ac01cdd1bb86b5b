// `admin.token`: when set, every admin path needs it except /healthz and /readyz (probes), /metrics
// with `metrics_public: true`, POST /revocations (which has its own token) and the page's own
// stylesheet, script and (empty) icon (files of the package, no data). Scripts send `Authorization: Bearer`;
// a browser is asked for the token by a form, and then holds a session cookie (HttpOnly,
// SameSite=Strict) that names no token: an expiry and an HMAC of it under a key this process made
// at start and the token's digest, so a changed token, or a restart, ends every session. Both
// are compared in constant time.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AdminSettings } from '../policy/admin_settings.js'

const COOKIE = 'jwtgate_admin'
const SESSION_SECONDS = 12 * 3600
const OPEN_PATHS = new Set(['/healthz', '/readyz', '/status.css', '/status.js', '/favicon.ico'])

/** Signs this process's sessions; never leaves it. */
const SESSION_KEY = randomBytes(32)

/** Turns the token check on for every route of the admin listener; `settings` is read per request, so a reload applies. */
export function requireAdminToken(app: FastifyInstance, settings: () => AdminSettings | null | undefined): void {
  app.addHook('onRequest', async (request, reply) => {
    const admin = settings()
    const digest = admin?.tokenDigest
    if (!digest) return
    const path = request.url.split('?', 1)[0]!
    if (OPEN_PATHS.has(path) || (path === '/metrics' && admin.metricsPublic)) return
    if (request.method === 'POST' && (path === '/revocations' || path === '/login')) return
    if (bearerMatches(request.headers.authorization, digest) || sessionValid(cookieOf(request.headers.cookie), digest)) return
    return refuse(request, reply)
  })

  // The page's sign-in form: the token in a form field, a session cookie back.
  app.post('/login', async (request, reply) => {
    const digest = settings()?.tokenDigest
    if (!digest) return reply.code(303).header('location', '/').send()
    if (!sameOrigin(request)) return reply.code(403).send({ error: 'forbidden', message: 'the sign-in form must be sent from this page' })
    const token = request.body instanceof URLSearchParams ? (request.body.get('token') ?? '') : ''
    if (!tokenMatches(token, digest)) return loginPage(reply.code(401), 'That is not the admin token.')
    const expires = Math.floor(Date.now() / 1000) + SESSION_SECONDS
    return reply
      .code(303)
      .header('set-cookie', `${COOKIE}=${expires}.${sign(expires, digest)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${SESSION_SECONDS}`)
      .header('location', '/')
      .send()
  })

  app.post('/logout', async (request, reply) => {
    if (!sameOrigin(request)) return reply.code(403).send({ error: 'forbidden', message: 'the sign-out form must be sent from this page' })
    return reply.code(303).header('set-cookie', `${COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`).header('location', '/').send()
  })

  // The form's body; nothing else on the admin listener takes one.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) =>
    done(null, new URLSearchParams(body as string)),
  )
}

/** Whether a session cookie is in the request (the page then offers to sign out). */
export function signedIn(request: FastifyRequest): boolean {
  return cookieOf(request.headers.cookie) !== undefined
}

function refuse(request: FastifyRequest, reply: FastifyReply) {
  reply.header('www-authenticate', 'Bearer realm="jwtgate-admin"')
  // A person gets the form; a script the JSON error.
  if (request.method === 'GET' && (request.headers.accept ?? '').includes('text/html')) return loginPage(reply.code(401))
  return reply.code(401).send({ error: 'unauthorized', message: 'this admin path needs the admin token (admin.token): Authorization: Bearer <token>' })
}

function loginPage(reply: FastifyReply, problem?: string) {
  return reply.type('text/html; charset=utf-8').send(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>jwtgate: sign in</title><link rel="stylesheet" href="/status.css"></head>
<body>
<main class="login">
<h1>jwtgate</h1>
<p>This admin listener needs its token (<code>admin.token</code> in the policy).</p>
${problem ? `<p class="bad" role="alert">${problem}</p>` : ''}
<form method="post" action="/login">
<label for="token">Admin token</label>
<input name="username" autocomplete="username" value="jwtgate-admin" hidden>
<input id="token" name="token" type="password" required autocomplete="current-password" autofocus>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`)
}

function bearerMatches(header: string | undefined, digest: Buffer): boolean {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header)
  return tokenMatches(match?.[1] ?? '', digest) && match !== null
}

/** Digests compared, so the time taken says nothing about the token, not even its length. */
function tokenMatches(token: string, digest: Buffer): boolean {
  return timingSafeEqual(createHash('sha256').update(token).digest(), digest)
}

function sign(expires: number, digest: Buffer): string {
  return createHmac('sha256', SESSION_KEY).update(`${expires}.`).update(digest).digest('base64url')
}

function sessionValid(value: string | undefined, digest: Buffer): boolean {
  if (!value) return false
  const dot = value.indexOf('.')
  const expires = Number(value.slice(0, dot))
  if (dot < 0 || !Number.isInteger(expires) || expires * 1000 < Date.now()) return false
  const given = Buffer.from(value.slice(dot + 1))
  const wanted = Buffer.from(sign(expires, digest))
  return given.length === wanted.length && timingSafeEqual(given, wanted)
}

function cookieOf(header: string | undefined): string | undefined {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const [name, ...value] = part.trim().split('=')
    if (name === COOKIE && value.length) return value.join('=') || undefined
  }
  return undefined
}

/**
 * A form sent by a page of this listener: what the browser says of where the form came from
 * (Sec-Fetch-Site, or else Origin) must be this listener; a script without either (curl) is let
 * through, since it could send the token itself anyway.
 */
function sameOrigin(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site']
  if (site !== undefined) return site === 'same-origin' || site === 'none'
  const origin = request.headers.origin
  if (origin === undefined) return true
  try {
    return new URL(origin).host === request.headers.host
  } catch {
    // Origin: null (a sandboxed frame, a page with no origin to give) is not this listener.
    return false
  }
}
