// The proxy: the decision (src/decide.ts: normalize → match route → authenticate and
// authorize), then forwarding with identity headers, or the denial as an RFC 6750 answer.
import { randomUUID } from 'node:crypto'
import { METHODS, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { accessLogger, LazyChildLogger } from '../log.js'
import { deny, fail } from '../http/denial.js'
import { answeredStatus, REQUEST_ID_HEADER, sendError } from '../http/respond.js'
import type { Metrics } from '../admin/metrics.js'
import type { CompiledPolicy, Route } from '../policy/compile.js'
import { addCorsHeaders, headerRecord, type HeaderSink } from '../proxy/cors.js'
import { UpstreamPools } from '../proxy/upstream_pools.js'
import { splitTarget } from '../routing/normalize.js'
import { admit } from './admit.js'
import { applyClientLimits, serverOptions, watchClients } from './client_limits.js'
import { forward, routeForwarding, type Forwarder, type GatewayRequest, type RouteForwarding } from './forward.js'
import { newState, type RecordRequest, type RequestState } from './request_state.js'
import { serverFactory } from './listeners.js'
import { decidedAtUpgrade, handleUpgrade } from './websocket.js'
import { NO_ROUTE_SCHEMAS } from '../http/route_schemas.js'

export interface GatewayApp {
  app: FastifyInstance
  /** The policy new requests use; replacing it is one assignment, which builds its routes' forwarding. */
  policy: CompiledPolicy
  /** Set when shutdown closes the listener: responses then end their connection. */
  closing: boolean
  /** Connections to the upstreams; `update` them when the policy changes. */
  pools: UpstreamPools
  /** Client sockets of open WebSocket tunnels, which the HTTP server no longer tracks. */
  upgraded: Set<Socket>
  record: RecordRequest
  /** A route's forwarding, built when the gateway took its policy. */
  forwarding(route: Route): RouteForwarding
  /** Counts a WebSocket tunnel closed because its token expired or was revoked. */
  tunnelClosed(reason: 'expired' | 'revoked', route: string): void
}

export async function buildGateway(policy: CompiledPolicy, logger: Logger, metrics: Metrics): Promise<GatewayApp> {
  // With HTTP/2 in listen.protocols, the listener is built in ./listeners.ts (one server for both versions).
  const factory = serverFactory(policy)
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Our own access line replaces fastify's two per request.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    childLoggerFactory: (parent, bindings, options) => new LazyChildLogger(parent as Logger, bindings, options) as unknown as FastifyBaseLogger,
    requestIdHeader: false,
    schemaController: NO_ROUTE_SCHEMAS,
    genReqId: requestId,
    return503OnClosing: true,
    // fastify answers some malformed requests itself; answer them in our shape, without echoing
    // the target (fastify's message quotes the raw URL).
    frameworkErrors: (error, request, reply) =>
      sendError(reply, error.code === 'FST_ERR_BAD_URL' ? deny('bad_path', 'the request target is not a valid URL') : fail('bad_request'), request.id),
    // Slow clients (./client_limits.ts): fastify's 0 would turn Node's request timeout off; the
    // socket's idle timer is the send timeout.
    requestTimeout: policy.clientLimits.requestTimeoutMs,
    connectionTimeout: policy.clientLimits.sendTimeoutMs,
    // Node's default (16 KiB) would leave no room next to a token of max_token_bytes.
    ...(factory
      ? { serverFactory: factory as never }
      : policy.listen.tls
        ? {
            https: {
              cert: policy.listen.tls.cert,
              key: policy.listen.tls.key,
              maxHeaderSize: policy.maxHeaderBytes,
              ...serverOptions(policy.clientLimits),
              // A TLS handshake is part of the head a client must send in time (Node's own: 120 s).
              handshakeTimeout: policy.clientLimits.headersTimeoutMs || 120_000,
            },
          }
        : { http: { maxHeaderSize: policy.maxHeaderBytes, ...serverOptions(policy.clientLimits) } }),
  })
  const server = app.server as Server
  const pools = new UpstreamPools(policy)
  const writeAccessLine = accessLogger(logger)
  // Filled when a policy is taken, for all its routes; a request that started under the previous
  // policy still finds its route's, until that policy is gone.
  const forwarding = new WeakMap<Route, RouteForwarding>()
  const take = (next: CompiledPolicy) => {
    for (const route of next.routes.values()) forwarding.set(route, routeForwarding(route))
    applyClientLimits(server, next.clientLimits)
    return next
  }
  let current = take(policy)
  const gateway: GatewayApp = {
    app,
    closing: false,
    pools,
    upgraded: new Set(),
    get policy() {
      return current
    },
    set policy(next) {
      current = take(next)
    },
    forwarding: (route) => forwarding.get(route)!,
    tunnelClosed: (reason, route) => metrics.websocketClosed(reason, route),
    record(state, id, method, target, status, ms, websocket) {
      metrics.request(state?.route?.name ?? 'none', method, status, ms / 1000, state?.denial?.reason)
      if (state?.route?.report) metrics.reportDecision(state.route.name, state.reported?.reason)
      if (state?.policy.accessLog ?? gateway.policy.accessLog) accessLog(writeAccessLine, state, id, method, target, status, ms, websocket)
    },
  }

  // Bodies stream through untouched: no parsing, no buffering, no body limit of our own.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
  // Open connections to the upstreams end with the gateway.
  app.addHook('onClose', (_app, done) => {
    pools.destroy().then(() => done(), done)
  })
  // What every answer carries: fastify's onSend hook adds it to the gateway's own answers, the
  // forwarder to the upstream's.
  function finishHeaders(sink: HeaderSink, request: FastifyRequest, state: RequestState | undefined): void {
    sink.header(REQUEST_ID_HEADER, request.id)
    if (gateway.closing) sink.header('connection', 'close')
    // CORS headers on every answer of a route with cors (denials too, so a page can read its
    // 401); the global rule for answers that matched no route.
    const cors = state?.route ? state.route.cors : (state?.policy ?? gateway.policy).cors
    if (cors) addCorsHeaders(sink, cors, request.headers.origin, state?.preflight === true, state?.preflight === true && state.denial !== undefined)
  }
  const forwarder: Forwarder = {
    pools,
    metrics,
    policy: () => gateway.policy,
    finishHeaders: (headers, request, state) => {
      // Ours wins over an upstream's own (the forwarder keeps the upstream's names lower-cased).
      headers[REQUEST_ID_HEADER] = request.id
      if (gateway.closing || state.route?.cors) finishHeaders(headerRecord(headers), request, state)
    },
  }
  app.decorateRequest('jwtgate', null)

  // Not async, and returning nothing: fastify would wrap a returned promise or reply (a
  // thenable) in a promise of its own, and wait on the response to settle it. A decision that
  // needed no I/O (a cached key, a cached token) is answered in this call.
  function handle(request: FastifyRequest, reply: FastifyReply): void {
    const raw = request.raw as IncomingMessage
    // An upgrade request that is not tunnelled arrives here already admitted (src/gateway/websocket.ts):
    // a one-time token is not used twice.
    const early = decidedAtUpgrade(raw) ?? (raw as Admitted)[ADMITTED]
    const state = early ?? newState(gateway.policy)
    const pending = early ? undefined : admit(raw, state, false)
    ;(request as GatewayRequest).jwtgate = state
    if (pending) pending.then(() => proceed(request, reply, state)).catch((err: Error) => reply.send(err))
    else proceed(request, reply, state)
  }

  function proceed(request: FastifyRequest, reply: FastifyReply, state: RequestState): void {
    if (state.denial) {
      sendError(reply, state.denial, request.id)
      return
    }
    // A CORS preflight the route's cors allows; onSend adds its headers.
    if (state.preflight) {
      reply.code(204).send()
      return
    }
    // Body limits are applied by the forwarder that carries the body (src/gateway/forward.ts).
    forward(forwarder, forwarding.get(state.route!)!, request as GatewayRequest, reply, state)
  }

  // fastify 5 knows only GET, HEAD, TRACE, DELETE, OPTIONS, PATCH, PUT, POST and QUERY: any other
  // method Node parses (WebDAV's PROPFIND, PROPPATCH, MKCOL, LOCK, REPORT, SEARCH, …) reached the
  // not-found handler without its body, and was forwarded with none. Known as methods with a body,
  // they are routed by app.all and their body streams through like a POST's.
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method, { hasBody: true })
  }
  app.all('*', handle)
  app.setNotFoundHandler(handle)
  // Hooks in the callback style: an async hook costs a promise and a microtask per request.
  app.addHook('onSend', (request, reply, payload, done) => {
    finishHeaders(reply, request, (request as GatewayRequest).jwtgate)
    done(null, payload)
  })
  app.addHook('onResponse', (request, reply, done) => {
    const status = answeredStatus(reply.raw, reply.statusCode)
    gateway.record((request as GatewayRequest).jwtgate, request.id, request.raw.method ?? '', request.raw.url ?? '', status, reply.elapsedTime)
    done()
  })
  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    request.log.error({ err: { message: error.message, code: error.code } }, 'request failed')
    const status = error.statusCode
    if (status && status >= 400 && status < 500) return sendError(reply, { ...fail('bad_request'), status }, request.id)
    return sendError(reply, fail('internal_error'), request.id)
  })
  watchClients(server, () => gateway.policy, metrics)
  // Expect: 100-continue (RFC 9110 §10.1.1): the request is admitted first, and only a request
  // that may go on is invited to send its body; a refusal (401, 413, …) is answered without it.
  // The same admission as every request, its decision handed to the request path.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const state = newState(gateway.policy)
    const go = () => {
      ;(req as Admitted)[ADMITTED] = state
      if (!state.denial && !state.preflight) res.writeContinue()
      server.emit('request', req, res)
    }
    let pending: void | Promise<void>
    try {
      pending = admit(req, state, false)
    } catch {
      // Left to the request path, which admits it again and answers any error in its shape.
      server.emit('request', req, res)
      return
    }
    if (pending) pending.then(go, () => server.emit('request', req, res))
    else go()
  })
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => handleUpgrade({ server, gateway, logger, requestId }, req, socket, head))
  return gateway
}

// A request admitted before fastify saw it (Expect: 100-continue), with its decision.
const ADMITTED = Symbol('jwtgate.admitted')
type Admitted = IncomingMessage & { [ADMITTED]?: RequestState }

// A client's request id is kept when it looks like one, so traces join up; otherwise ours.
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/** One line per request. Never the Authorization or Cookie header, never the query string. */
function accessLog(
  write: ReturnType<typeof accessLogger>,
  state: RequestState | undefined,
  requestId: string,
  method: string,
  target: string,
  status: number,
  ms: number,
  websocket: boolean | undefined,
): void {
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
