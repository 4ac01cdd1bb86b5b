// The proxy: the decision (src/decide.ts: normalize → match route → authenticate and
// authorize), then forwarding with identity headers, or the denial as an RFC 6750 answer.
import { randomUUID } from 'node:crypto'
import { METHODS, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { accessLogger, LazyChildLogger, USER_AGENT_MAX } from '../log.js'
import { deny, fail } from '../http/denial.js'
import { answeredStatus, REQUEST_ID_HEADER, sendError } from '../http/respond.js'
import type { Metrics } from '../admin/metrics.js'
import type { CompiledPolicy, Route } from '../policy/compile.js'
import { addCorsHeaders, headerRecord, type HeaderSink } from '../proxy/cors.js'
import { clientAddress } from '../proxy/client_address.js'
import { requestScheme } from '../proxy/https_only.js'
import { UpstreamPools } from '../proxy/upstream_pools.js'
import { splitTarget } from '../routing/normalize.js'
import { hostFromHeader } from '../routing/route_table.js'
import type { Tracing } from '../tracing/tracing.js'
import { admit } from './admit.js'
import { applyClientLimits, serverOptions, watchClients } from './client_limits.js'
import { forward, routeForwarding, type Forwarder, type GatewayRequest, type RouteForwarding } from './forward.js'
import { newState, traceRequest, type RecordRequest, type RequestState } from './request_state.js'
import { serverFactory } from './listeners.js'
import { decidedAtUpgrade, handleUpgrade } from './websocket.js'
import { NO_ROUTE_SCHEMAS } from '../http/route_schemas.js'
import { clientCertificateOptions } from '../policy/tls_files.js'

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
  /** A route's forwarding, built on its first request and kept as long as the route. */
  forwarding(route: Route): RouteForwarding
  /** Counts a WebSocket tunnel closed because its token expired or was revoked. */
  tunnelClosed(reason: 'expired' | 'revoked', route: string): void
}

/** `tracing`: the span exporter (src/tracing/otel.ts), when the OTEL_* variables ask for one. */
export async function buildGateway(policy: CompiledPolicy, logger: Logger, metrics: Metrics, tracing?: Tracing): Promise<GatewayApp> {
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
              ...clientCertificateOptions(policy.listen.tls),
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
  // Built on a route's first request, not when a policy is taken: for 5,000 routes that was
  // some 10 ms of one reload's single step. Keyed by the route object, so a request that started
  // under the previous policy still finds its route's until that policy is gone.
  const built = new WeakMap<Route, RouteForwarding>()
  const forwarding = (route: Route): RouteForwarding => {
    let found = built.get(route)
    if (!found) built.set(route, (found = routeForwarding(route)))
    return found
  }
  const take = (next: CompiledPolicy) => {
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
    forwarding,
    tunnelClosed: (reason, route) => metrics.websocketClosed(reason, route),
    record(state, raw, id, status, ms, responseBytes, websocket) {
      metrics.request(state?.route?.name ?? 'none', raw.method ?? '', status, ms / 1000, state?.denial?.reason)
      if (state?.route?.report) metrics.reportDecision(state.route.name, state.reported?.reason)
      metrics.remember(state, id, raw.method ?? '', raw.url ?? '', status)
      const policy = state?.policy ?? gateway.policy
      const client = policy.accessLog || state?.span ? clientAddress(raw, policy.https.trustedProxies) : undefined
      if (policy.accessLog) accessLog(writeAccessLine, state, raw, client, id, status, ms, responseBytes, websocket)
      if (state?.span) endSpan(state, raw, client, id, status, websocket)
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
    if (!early) traceRequest(state, raw, tracing)
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
    forward(forwarder, forwarding(state.route!), request as GatewayRequest, reply, state)
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
    const state = (request as GatewayRequest).jwtgate
    // A forwarded answer's body was counted as it streamed; the gateway's own answers carry their length.
    const bytes = state?.responseBytes ?? Number(reply.getHeader('content-length') ?? 0)
    gateway.record(state, request.raw, request.id, answeredStatus(reply.raw, reply.statusCode), reply.elapsedTime, bytes)
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
    traceRequest(state, req, tracing)
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
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => handleUpgrade({ server, gateway, logger, requestId, tracing }, req, socket, head))
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
  raw: IncomingMessage,
  client: string | undefined,
  requestId: string,
  status: number,
  ms: number,
  responseBytes: number | undefined,
  websocket: boolean | undefined,
): void {
  const claims = state?.identity?.claims
  write({
    requestId,
    method: raw.method,
    path: requestPath(state, raw),
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
    client,
    userAgent: raw.headers['user-agent'],
    requestBytes: websocket ? undefined : (state?.requestBytes ?? 0),
    responseBytes: websocket ? undefined : responseBytes,
    upstreamStatus: state?.upstreamStatus,
    upstreamMs: state?.upstreamMs === undefined ? undefined : Math.round(state.upstreamMs * 100) / 100,
    traceId: state?.span?.traceId ?? state?.trace?.traceId,
    spanId: state?.span?.spanId,
  })
}

/** The normalized path, or the raw one (cut) when it never was: never the query. */
function requestPath(state: RequestState | undefined, raw: IncomingMessage): string {
  return state?.path ?? splitTarget(raw.url ?? '').path.slice(0, 256)
}

/** Ends the request's SERVER span with what it came to (src/tracing/tracing.ts, RequestOutcome). */
function endSpan(
  state: RequestState,
  raw: IncomingMessage,
  client: string | undefined,
  requestId: string,
  status: number,
  websocket: boolean | undefined,
): void {
  const host = hostFromHeader(raw.headers.host)
  const userAgent = raw.headers['user-agent']
  state.span!.end({
    route: state.route?.name,
    status,
    decision: state.denial ? 'deny' : state.reported ? 'report' : 'allow',
    reason: state.denial?.reason ?? state.reported?.reason ?? state.upstreamError,
    issuer: state.identity?.issuer.name,
    upstream: state.route?.upstream.name,
    path: requestPath(state, raw),
    scheme: requestScheme(raw, state.policy.https),
    serverAddress: host === '' ? undefined : host,
    serverPort: raw.socket.localPort,
    clientAddress: client,
    peerAddress: raw.socket.remoteAddress,
    userAgent: userAgent === undefined ? undefined : userAgent.slice(0, USER_AGENT_MAX),
    httpVersion: raw.httpVersion,
    requestId,
    websocket: websocket === true,
  })
}
