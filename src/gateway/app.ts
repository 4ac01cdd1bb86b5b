// The proxy: the decision (src/decide.ts: normalize → match route → authenticate and
// authorize), then forwarding with identity headers, or the denial as an RFC 6750 answer.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import replyFrom from '@fastify/reply-from'
import type { Logger } from 'pino'
import { accessLogger, LazyChildLogger } from '../log.js'
import { challenge, deny, type Denial } from '../http/denial.js'
import { decide } from '../decide.js'
import type { Metrics } from '../admin/metrics.js'
import type { CompiledPolicy, Route } from '../policy/compile.js'
import { limitBody } from '../proxy/body_limit.js'
import { addCorsHeaders, preflightOf } from '../proxy/cors.js'
import { upstreamUrl } from '../proxy/forward.js'
import { insecureRequest } from '../proxy/https_only.js'
import { UpstreamPools } from '../proxy/upstream_pools.js'
import { splitTarget } from '../routing/normalize.js'
import { forwardOptions, type GatewayRequest } from './forward.js'
import { newState, type RecordRequest, type RequestState } from './request_state.js'
import { decidedAtUpgrade, handleUpgrade } from './websocket.js'


export interface GatewayApp {
  app: FastifyInstance
  /** The policy new requests use; replacing it is one assignment. */
  policy: CompiledPolicy
  /** Set when shutdown closes the listener: responses then end their connection. */
  closing: boolean
  /** Connections to the upstreams; `update` them when the policy changes. */
  pools: UpstreamPools
  /** Client sockets of open WebSocket tunnels, which the HTTP server no longer tracks. */
  upgraded: Set<Socket>
  record: RecordRequest
}

export async function buildGateway(policy: CompiledPolicy, logger: Logger, metrics: Metrics): Promise<GatewayApp> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Our own access line replaces fastify's two per request.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    childLoggerFactory: (parent, bindings, options) => new LazyChildLogger(parent as Logger, bindings, options) as unknown as FastifyBaseLogger,
    requestIdHeader: false,
    genReqId: requestId,
    return503OnClosing: true,
    // fastify answers some malformed requests itself; answer them in our shape.
    frameworkErrors: (error, request, reply) => sendDenial(reply, deny('bad_path', error.message), request.id),
    // Node's default (16 KiB) would leave no room next to a token of max_token_bytes.
    ...(policy.listen.tls
      ? { https: { cert: policy.listen.tls.cert, key: policy.listen.tls.key, maxHeaderSize: policy.maxHeaderBytes } }
      : { http: { maxHeaderSize: policy.maxHeaderBytes } }),
  })
  const pools = new UpstreamPools(policy)
  const writeAccessLine = accessLogger(logger)
  const gateway: GatewayApp = {
    app, policy, closing: false, pools, upgraded: new Set(),
    record(state, id, method, target, status, ms, websocket) {
      metrics.request(state?.route?.name ?? 'none', method, status, ms / 1000, state?.denial?.reason)
      if (state?.route?.report) metrics.reportDecision(state.route.name, state.reported?.reason)
      if (state?.policy.accessLog ?? gateway.policy.accessLog) accessLog(writeAccessLine, state, id, method, target, status, ms, websocket)
    },
  }
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
    // Per-upstream pools (connections, TLS verified with the upstream's own CA and client
    // certificate); reply-from's one dispatcher picks them by origin.
    undici: pools,
    destroyAgent: true,
    disableCache: true,
    disableRequestLogging: true,
  })
  app.decorateRequest('jwtgate', null)

  // Not async: a request whose decision needs no I/O (a cached key, a cached token) is
  // forwarded without a promise or a microtask hop of our own.
  function handle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> | FastifyReply | undefined {
    // An upgrade request that is not tunnelled arrives here already decided (src/gateway/websocket.ts).
    const early = decidedAtUpgrade(request.raw as IncomingMessage)
    const state = early ?? newState(gateway.policy)
    ;(request as GatewayRequest).jwtgate = state
    if (!early) {
      state.denial = insecureRequest(request.raw as IncomingMessage, state.policy.https)
      if (state.denial) return sendDenial(reply, state.denial, request.id)
      const method = request.raw.method ?? 'GET'
      const pending = decide(state.policy, method, request.headers.host, request.raw.url ?? '', request.raw, state, preflightOf(method, request.headers))
      if (pending) return pending.then(() => proceed(request, reply, state))
    }
    proceed(request, reply, state)
  }

  function proceed(request: FastifyRequest, reply: FastifyReply, state: RequestState): FastifyReply {
    if (state.denial) return sendDenial(reply, state.denial, request.id)
    // A CORS preflight the route's cors allows; onSend adds its headers.
    if (state.preflight) return reply.code(204).send()
    const limit = state.route!.maxBodyBytes
    if (limit > 0) {
      const limited = limitBody(request.body, request.headers['content-length'], limit)
      if ('reason' in limited) {
        state.denial = limited
        // The client may be sending the body still: do not read it to keep the connection.
        reply.header('connection', 'close')
        return sendDenial(reply, limited, request.id)
      }
      request.body = limited.body
    }
    state.forwardedAt = performance.now()
    return reply.from(upstreamUrl(state.route!, state.path!), options(state.route!))
  }

  app.all('*', handle)
  app.setNotFoundHandler(handle)
  // Hooks in the callback style: an async hook costs a promise and a microtask per request.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (gateway.closing) reply.header('connection', 'close')
    // CORS headers on every answer of a route with cors (denials too, so a page can read its
    // 401); the global rule for answers that matched no route.
    const state = (request as GatewayRequest).jwtgate
    const cors = state?.route ? state.route.cors : (state?.policy ?? gateway.policy).cors
    if (cors) addCorsHeaders(reply, cors, request.headers.origin, state?.preflight === true, state?.preflight === true && state.denial !== undefined)
    done(null, payload)
  })
  app.addHook('onResponse', (request, reply, done) => {
    gateway.record((request as GatewayRequest).jwtgate, request.id, request.raw.method ?? '', request.raw.url ?? '', reply.statusCode, reply.elapsedTime)
    done()
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
  const server = app.server as Server
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => handleUpgrade({ server, gateway, logger, requestId }, req, socket, head))
  return gateway
}

function sendDenial(reply: FastifyReply, denial: Denial, id: string): FastifyReply {
  const header = challenge(denial)
  if (header) reply.header('www-authenticate', header)
  if (denial.status === 503) reply.header('retry-after', '5')
  if (denial.location) reply.header('location', denial.location)
  return reply.code(denial.status).header('cache-control', 'no-store').type('application/json')
    .send({ error: denial.reason, message: denial.description, request_id: id })
}

// A client's request id is kept when it looks like one, so traces join up; otherwise ours.
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/** One line per request. Never the Authorization or Cookie header, never the query string. */
function accessLog(write: ReturnType<typeof accessLogger>, state: RequestState | undefined, requestId: string, method: string, target: string, status: number, ms: number, websocket: boolean | undefined): void {
  const claims = state?.identity?.claims
  write({
    requestId,
    method,
    path: state?.path ?? splitTarget(target).path.slice(0, 256),
    route: state?.route?.name,
    upstream: state?.route?.upstream.name,
    status,
    ms: Math.round(ms * 100) / 100,
    issuer: state?.identity?.issuer.name,
    sub: typeof claims?.sub === 'string' ? claims.sub : undefined,
    reason: state?.denial?.reason ?? state?.upstreamError,
    // mode: report: what enforcing would have answered; the request was forwarded anyway.
    report: state?.route?.report ? (state.reported ? 'deny' : 'allow') : undefined,
    reportStatus: state?.reported?.status,
    reportReason: state?.reported?.reason,
    websocket,
  })
}
