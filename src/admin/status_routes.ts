// The status page and its JSON on the admin listener:
//   GET  /                       the page (HTML; ?reason=&route= filter the refusals)
//   GET  /ask?method=&host=&path=&claims=   the page with the policy's answer to one request
//   GET  /status.json            everything the page shows, as JSON
//   GET  /status/refusals.json   the recent refusals (?reason=&route= filter them)
//   POST /ask.json               {"method","path","host"?,"claims"?}: `jwtgate explain`'s answer
//   GET  /status.js, /status.css the page's script (refresh) and stylesheet
// Every answer of the admin listener carries the security headers below.
import { readFileSync } from 'node:fs'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Question } from '../explain.js'
import type { CompiledPolicy } from '../policy/compile.js'
import { signedIn } from './admin_access.js'
import { askPolicy, type StatusDocument } from './status.js'
import { renderStatusPage, type PageOptions } from './status_page.js'

/**
 * No script but the page's own file, no inline script or style, nothing from elsewhere, never in
 * a frame; forms post only here.
 */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

const ASSETS = {
  '/status.js': { type: 'text/javascript; charset=utf-8', file: 'status.js' },
  '/status.css': { type: 'text/css; charset=utf-8', file: 'status.css' },
} as const

export function securityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('content-security-policy', CSP)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('x-frame-options', 'DENY')
    // Nothing goes to another site; a form posted here still says where it came from (Origin).
    reply.header('referrer-policy', 'same-origin')
    // Live data, some of it about requests: never kept by a browser or a proxy.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store')
    done(null, payload)
  })
}

export function statusRoutes(app: FastifyInstance, policy: () => CompiledPolicy, status: () => Promise<StatusDocument>): void {
  // Read once: they are files of the package (next to this module in src/ and, copied by the build, in dist/).
  for (const [path, asset] of Object.entries(ASSETS)) {
    const body = readFileSync(new URL(`./assets/${asset.file}`, import.meta.url))
    app.get(path, async (_request, reply) => reply.type(asset.type).send(body))
  }

  // Browsers ask for it; the page has none.
  app.get('/favicon.ico', async (_request, reply) => reply.code(204).send())

  app.get('/', async (request, reply) => page(reply, await status(), pageOptions(request)))

  app.get('/ask', async (request, reply) => {
    const q = request.query as Record<string, unknown>
    const form = { method: text(q.method) || 'GET', host: text(q.host), path: text(q.path), claims: text(q.claims) }
    const question = questionOf(form)
    const options = pageOptions(request)
    options.ask = typeof question === 'string' ? { ...form, error: question } : { ...form, answer: await askPolicy(policy(), question) }
    return page(reply, await status(), options)
  })

  app.get('/status.json', async () => status())

  app.get('/status/refusals.json', async (request) => {
    const { filter } = pageOptions(request)
    const doc = await status()
    return {
      kept: doc.refusals_kept,
      refusals: doc.refusals.filter((r) => (!filter.reason || r.reason === filter.reason) && (!filter.route || r.route === filter.route)),
    }
  })

  app.post('/ask.json', { bodyLimit: 32 * 1024 }, async (request, reply) => {
    const body = (typeof request.body === 'object' && request.body !== null ? request.body : {}) as Record<string, unknown>
    const claims = body.claims === undefined ? '' : JSON.stringify(body.claims)
    const question = questionOf({ method: text(body.method) || 'GET', host: text(body.host), path: text(body.path), claims })
    if (typeof question === 'string') return reply.code(400).send({ error: 'bad_request', message: question })
    return askPolicy(policy(), question)
  })
}

function page(reply: FastifyReply, doc: StatusDocument, options: PageOptions) {
  return reply.type('text/html; charset=utf-8').send(renderStatusPage(doc, options))
}

function pageOptions(request: FastifyRequest): PageOptions {
  const q = request.query as Record<string, unknown>
  return { filter: { reason: text(q.reason) || undefined, route: text(q.route) || undefined }, signedIn: signedIn(request) }
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : ''
}

const MAX_CLAIMS = 16 * 1024

/** The question, or why it cannot be asked (shown beside the form). */
function questionOf(form: { method: string; host: string; path: string; claims: string }): Question | string {
  const method = form.method.toUpperCase()
  if (!/^[A-Z]{1,16}$/.test(method)) return 'the method is not an HTTP method'
  if (!form.path.startsWith('/') || form.path.length > 4096) return 'the path must start with / (at most 4096 characters)'
  if (form.host.length > 255 || /[\s]/.test(form.host)) return 'the host is not a host name'
  let claims: Record<string, unknown> | undefined
  if (form.claims.trim()) {
    if (form.claims.length > MAX_CLAIMS) return `the claims are longer than ${MAX_CLAIMS} characters`
    try {
      claims = JSON.parse(form.claims) as Record<string, unknown>
    } catch (err) {
      return `the claims are not valid JSON: ${(err as Error).message}`
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims))
      return 'the claims must be a JSON object, as in {"sub":"alice","roles":["admin"]}'
  }
  return { method, target: form.path, ...(form.host ? { host: form.host } : {}), ...(claims ? { claims } : {}) }
}
