// The proxy: the decision (src/decide.ts: normalize → match route → authenticate and
// authorize), then forwarding with identity headers, or the denial as an RFC 6750 answer.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import replyFrom from '@fastify/reply-from'
import type { Logger } from 'pino'
import { challenge, deny, type Denial } from './auth/deny.js'
import { decide, type Decision } from './decide.js'
import type { Metrics } from './admin/metrics.js'
import type { CompiledPolicy, Route } from './policy/compile.js'
import { forwardOptions, upstreamUrl } from './proxy/forward.js'
import { splitTarget } from './routing/normalize.js'

/** What the gateway learnt about one request, for forwarding and the access log. */
export interface RequestState extends Decision {
  /** The policy the request started under; a reload never changes it mid-request. */
  policy: CompiledPolicy
  upstreamError?: string
  /** performance.now() when forwarding began, for the upstream latency metric. */
  forwardedAt?: number
}

type GatewayRequest = FastifyRequest & { jwtgate: RequestState }

export interface GatewayApp {
  app: FastifyInstance
  /** The policy new requests use; replacing it is one assignment. */
  policy: CompiledPolicy
  /** Set when shutdown closes the listener: responses then end their connection. */
  closing: boolean
}

export async function buildGateway(policy: CompiledPolicy, logger: Logger, metrics: Metrics): Promise<GatewayApp> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Our own access line replaces fastify's two per request.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    requestIdHeader: false,
    genReqId: requestId,
    return503OnClosing: true,
    // fastify answers some malformed requests itself; answer them in our shape.
    frameworkErrors: (error, request, reply) => sendDenial(reply, deny('bad_path', error.message), request.id),
  })
  const gateway: GatewayApp = { app, policy, closing: false }
  const optionsByRoute = new WeakMap<Route, ReturnType<typeof forwardOptions>>()
  const options = (route: Route) => {
    let o = optionsByRoute.get(route)
    if (!o) optionsByRoute.set(route, (o = forwardOptions(route, metrics)))
    return o
  }

  // Bodies stream through untouched: no parsing, no buffering, no body limit of our own.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
  await app.register(replyFrom, {
    undici: { connections: 128, pipelining: 1, connect: { rejectUnauthorized: true, timeout: 5000 } },
    destroyAgent: true,
    disableCache: true,
    disableRequestLogging: true,
  })
  app.decorateRequest('jwtgate', null)

  async function handle(request: FastifyRequest, reply: FastifyReply) {
    const state: RequestState = { policy: gateway.policy }
    ;(request as GatewayRequest).jwtgate = state
    const pending = decide(state.policy, request.raw.method ?? 'GET', request.headers.host, request.raw.url ?? '', request.raw, state)
    if (pending) await pending
    if (state.denial) return sendDenial(reply, state.denial, request.id)
    state.forwardedAt = performance.now()
    return reply.from(upstreamUrl(state.route!, state.path!), options(state.route!))
  }

  app.all('*', handle)
  app.setNotFoundHandler(handle)
  app.addHook('onSend', async (_request, reply) => {
    if (gateway.closing) reply.header('connection', 'close')
  })
  app.addHook('onResponse', async (request, reply) => {
    const state = (request as GatewayRequest).jwtgate
    metrics.request(state?.route?.name ?? 'none', request.raw.method ?? '', reply.statusCode, reply.elapsedTime / 1000, state?.denial?.reason)
    if (state?.route?.report) metrics.reportDecision(state.route.name, state.reported?.reason)
    accessLog(request as GatewayRequest, reply)
  })
  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    request.log.error({ err: { message: error.message, code: error.code } }, 'request failed')
    const status = error.statusCode
    if (status && status >= 400 && status < 500) {
      // reply-from refuses some targets our normalizer keeps (a segment such as `..b`).
      return reply.code(status).header('cache-control', 'no-store').type('application/json').send({ error: 'bad_request', message: 'the request could not be processed', request_id: request.id })
    }
    return reply.code(500).type('application/json').send({ error: 'internal_error', message: 'the gateway failed to process the request', request_id: request.id })
  })
  return gateway
}

function sendDenial(reply: FastifyReply, denial: Denial, id: string): FastifyReply {
  const header = challenge(denial)
  if (header) reply.header('www-authenticate', header)
  if (denial.status === 503) reply.header('retry-after', '5')
  return reply.code(denial.status).header('cache-control', 'no-store').type('application/json')
    .send({ error: denial.reason, message: denial.description, request_id: id })
}

// A client's request id is kept when it looks like one, so traces join up; otherwise ours.
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

function reportFields(reported: Denial | undefined) {
  if (!reported) return { report: 'allow' }
  return { report: 'deny', report_status: reported.status, report_reason: reported.reason }
}

/** One line per request. Never the Authorization or Cookie header, never the query string. */
function accessLog(request: GatewayRequest, reply: FastifyReply): void {
  const state = request.jwtgate
  const claims = state?.identity?.claims
  request.log.info({
    method: request.raw.method,
    path: state?.path ?? splitTarget(request.raw.url ?? '').path.slice(0, 256),
    route: state?.route?.name,
    upstream: state?.route?.upstream.name,
    status: reply.statusCode,
    ms: Math.round(reply.elapsedTime * 100) / 100,
    issuer: state?.identity?.issuer.name,
    sub: typeof claims?.sub === 'string' ? claims.sub : undefined,
    reason: state?.denial?.reason ?? state?.upstreamError,
    // mode: report: what enforcing would have answered; the request was forwarded anyway.
    ...(state?.route?.report ? reportFields(state.reported) : {}),
  }, 'request')
}
