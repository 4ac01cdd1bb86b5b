// Forwarding an allowed request to its route's upstream: the request's head built from what the
// route fixed when the gateway took its policy (origin, Host, path prefix, timeout, token
// parameters) and the request's own headers (src/proxy/forward.ts: hop-by-hop and token headers
// out, identity and X-Forwarded-* in), sent on the upstream's pool by an UpstreamExchange
// (src/proxy/upstream_exchange.ts) that streams both bodies. Failures before the upstream's
// answer are answered by the one error responder: 502 unreachable, 504 timeout, 503 busy, 413
// body too large, 408 body too slow; none is retried.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Metrics } from '../admin/metrics.js'
import { fail, type ErrorAnswer } from '../http/denial.js'
import { grpcTrailers, isGrpcRequest } from '../http/grpc_status.js'
import { sendError } from '../http/respond.js'
import type { CompiledPolicy, Route } from '../policy/compile.js'
import { bodyTooLarge, isBodyTooLarge, isBodyTooSlow, limitBody } from '../proxy/body_limit.js'
import { responseHeaders, upstreamRequestHeaders } from '../proxy/forward.js'
import { forwardedQuery } from '../proxy/token_removal.js'
import type { ExchangeOwner } from '../proxy/h2_upstream.js'
import { ClientGone, UpstreamExchange } from '../proxy/upstream_exchange.js'
import { isUpstreamBusy, type UpstreamPools } from '../proxy/upstream_pools.js'
import { TIMED_OUT } from './client_limits.js'
import { forwardOverHttp2, Refusal } from './grpc_call.js'
import type { RequestState } from './request_state.js'
import type { ClientSpan, TraceHeaders } from '../tracing/tracing.js'

export type GatewayRequest = FastifyRequest & { jwtgate: RequestState }

/** What forwarding needs of one route, built when the gateway takes its policy, not per request. */
export interface RouteForwarding {
  readonly upstream: string
  readonly origin: string
  /** The Host the upstream is sent: its own (scheme default port left out), as a client of it would send. */
  readonly host: string
  readonly basePath: string
  readonly timeoutMs: number
  /** The upstream speaks HTTP/2 (protocol h2c or h2): forwarded on node:http2 (src/proxy/h2_upstream.ts). */
  readonly http2: boolean
  /** Query parameters that carry the route's token: never forwarded (RFC 6750 §2.3, §5.3). */
  readonly tokenParameters: readonly string[]
}

export function routeForwarding(route: Route): RouteForwarding {
  const { upstream } = route
  return Object.freeze({
    upstream: upstream.name,
    origin: upstream.origin,
    host: new URL(upstream.origin).host,
    basePath: upstream.basePath,
    timeoutMs: upstream.timeoutMs,
    http2: upstream.protocol !== 'http1',
    tokenParameters: Object.freeze([...(route.auth?.sources.queryNames ?? [])]),
  })
}

/** What forwarding needs of the gateway. */
export interface Forwarder {
  pools: UpstreamPools
  metrics: Metrics
  /** The live policy (a long call's token is checked against its revocations). */
  policy(): CompiledPolicy
  /** Adds what every answer of the gateway carries (CORS, Connection: close while closing), as fastify's onSend hook does for its own. */
  finishHeaders(headers: OutgoingHttpHeaders, request: FastifyRequest, state: RequestState): void
}

/** Sends an admitted request to its route's upstream; the answer is written to the client's response. */
export function forward(forwarder: Forwarder, forwarding: RouteForwarding, request: GatewayRequest, reply: FastifyReply, state: RequestState): void {
  const raw = request.raw
  const path = forwarding.basePath + state.path!
  // Normalization keeps segments such as `..b` and `a..`; some servers read them as a step up,
  // so no path with `/..` or `../` in its text is forwarded (the rule reply-from applied).
  if (path.includes('/..') || path.includes('../')) {
    sendError(reply, fail('bad_request', 'the path has a segment that starts or ends with ..'), request.id)
    return
  }
  const method = raw.method ?? 'GET'
  // With tracing on, the call to the upstream is a CLIENT span whose context the upstream receives.
  const client = state.span?.startClient({ method, upstream: forwarding.upstream, origin: forwarding.origin, path })
  const answer = new GatewayAnswer(forwarder, request, reply, state, forwarding, client)
  const headers = headersForUpstream(raw.headers, state, raw, request.id, client ?? state.trace)
  const limits = state.policy.clientLimits
  const bodyLimits = { maxBytes: state.route!.maxBodyBytes, minRate: limits.minBodyRate, windowMs: limits.bodyRateWindowMs }
  if (forwarding.http2) {
    const upstream = forwarder.pools.h2(forwarding.origin)
    if (!upstream) {
      answer.failed(removedByReload(forwarding))
      return
    }
    state.forwardedAt = performance.now()
    const clientStream = clientH2Stream(request)
    forwardOverHttp2(upstream, answer, raw, reply.raw, state, forwarder.policy, {
      method,
      path: path + forwardedQuery(raw.url ?? '', forwarding.tokenParameters),
      authority: forwarding.host,
      headers,
      body: clientStream ? (clientStream.endAfterHeaders ? null : clientStream) : requestBody(request),
      bodyIsClientStream: clientStream !== undefined,
      bodyLimits,
      count: state,
      timeoutMs: forwarding.timeoutMs,
      trailers: undefined,
    })
    return
  }
  const pool = forwarder.pools.pool(forwarding.origin)
  // The wait for a connection is bounded by the route's timeout too.
  const exchange = new UndiciExchange(reply.raw, forwarding.timeoutMs, answer)
  if (!pool) {
    exchange.failedBeforeSending(removedByReload(forwarding))
    return
  }
  headers.host = forwarding.host
  state.forwardedAt = performance.now()
  exchange.send(pool, {
    origin: forwarding.origin,
    path: path + forwardedQuery(raw.url ?? '', forwarding.tokenParameters),
    method,
    headers,
    // A streamed body through the limits' counter (src/proxy/body_limit.ts), which also counts its bytes.
    body: (limitBody(requestBody(request), bodyLimits, state) as Readable | null) ?? null,
    // Until the upstream's head, and between two chunks of its body.
    headersTimeout: forwarding.timeoutMs,
    bodyTimeout: forwarding.timeoutMs,
  })
}

/**
 * The request's body stream, or null for none. fastify hands the body over when the request has a
 * Content-Length or Transfer-Encoding, or a Content-Type; an HTTP/2 request has neither of the
 * first two when its body streams, so one without a Content-Type would lose its body: HTTP/2
 * says a body comes when the HEADERS frame did not end the stream.
 */
function requestBody(request: GatewayRequest): Readable | null {
  const body = request.body as Readable | undefined
  if (body) return body
  const raw = request.raw as IncomingMessage & { stream?: { endAfterHeaders: boolean } }
  return raw.httpVersionMajor === 2 && raw.stream && !raw.stream.endAfterHeaders ? raw : null
}

/**
 * An HTTP/2 client's own stream, undefined over HTTP/1.1. For an HTTP/2 upstream the body is read
 * from it rather than through node:http2's compatibility request, a Readable fed from that stream
 * chunk by chunk: one stream and its events less a request.
 */
function clientH2Stream(request: GatewayRequest): (Readable & { endAfterHeaders: boolean }) | undefined {
  const raw = request.raw as IncomingMessage & { stream?: Readable & { endAfterHeaders: boolean } }
  return raw.httpVersionMajor === 2 ? raw.stream : undefined
}

/**
 * Whether the client's request has been read to its end. An HTTP/2 request whose HEADERS frame
 * ended the stream has no body, but node:http2 marks it complete only once its (empty) body was
 * read, which a GET's never is: taken as unread, its answer got `Connection: close`, that is a
 * RST_STREAM(NO_ERROR) after it, which cut the answer for some clients (curl, 1 request in 5).
 */
function requestRead(raw: IncomingMessage): boolean {
  if (raw.complete) return true
  // An HTTP/2 body forwarded to an HTTP/2 upstream is read from the stream (clientH2Stream), which the
  // compatibility request's `complete` does not see.
  const stream = (raw as IncomingMessage & { stream?: { endAfterHeaders: boolean; readableEnded: boolean } }).stream
  return raw.httpVersionMajor === 2 && (stream?.endAfterHeaders === true || stream?.readableEnded === true)
}

function removedByReload(forwarding: RouteForwarding): Error {
  return new Error(`no connection pool for ${forwarding.origin}: the upstream was removed by a reload`)
}

/**
 * The headers the upstream receives for an allowed request: forwarded or tunnelled alike.
 * `trace`: the context the upstream continues (the CLIENT span's, or the client's own).
 */
export function headersForUpstream(
  headers: IncomingHttpHeaders,
  state: RequestState,
  raw: IncomingMessage,
  requestId: string,
  trace: TraceHeaders | undefined,
): IncomingHttpHeaders {
  // Compiled with the route: a request only reads it.
  return upstreamRequestHeaders(headers, state.route!.headerCopy, state.identityHeaders, raw, state.policy.https, requestId, trace)
}

/** The undici forwarder's exchange (HTTP/1.1 upstreams), answering through the route's GatewayAnswer. */
class UndiciExchange extends UpstreamExchange {
  constructor(
    res: ServerResponse,
    waitMs: number,
    private readonly owner: GatewayAnswer,
  ) {
    super(res, waitMs)
  }

  failedBeforeSending(error: Error): void {
    this.settle(error)
  }

  protected override responseHead(statusCode: number, headers: IncomingHttpHeaders): OutgoingHttpHeaders {
    return this.owner.responseHead(statusCode, headers)
  }

  protected override clientLeft(): void {
    this.owner.clientLeft()
  }

  protected override finished(error: Error | undefined): void {
    this.owner.finished(error, this.bodyBytes)
  }

  protected override failed(error: Error): void {
    this.owner.failed(error)
  }
}

/** What the gateway makes of the upstream's answer and of a failure, whichever forwarder (HTTP/1.1 or HTTP/2) carried it. */
export class GatewayAnswer implements ExchangeOwner {
  constructor(
    private readonly forwarder: Forwarder,
    private readonly request: GatewayRequest,
    private readonly reply: FastifyReply,
    private readonly state: RequestState,
    private readonly forwarding: RouteForwarding,
    private readonly client: ClientSpan | undefined,
  ) {}

  responseHead(statusCode: number, headers: IncomingHttpHeaders): OutgoingHttpHeaders {
    const { state, request } = this
    // The upstream's share of the latency.
    if (state.forwardedAt !== undefined) {
      const ms = performance.now() - state.forwardedAt
      this.forwarder.metrics.upstream(this.forwarding.upstream, ms / 1000)
      state.upstreamMs = ms
    }
    state.upstreamStatus = statusCode
    this.client?.answered(statusCode)
    const out: OutgoingHttpHeaders = responseHeaders(headers)
    // RFC 9110 §8.6, §15.3.5: a 204 has no content, so no Content-Length or Content-Type either
    // (fastify's rule; a delete is fine on this rare path).
    if (statusCode === 204) {
      delete out['content-length']
      delete out['content-type']
    }
    // A connection cannot carry the next request before this one's body is read: answered
    // early (the upstream did not read it all), it is closed after the answer.
    if (!requestRead(request.raw)) out.connection = 'close'
    // RFC 9449 §8.2: a client whose proof used an older nonce learns the newest with the answer.
    if (state.identity?.nextNonce) out['dpop-nonce'] = state.identity.nextNonce
    this.forwarder.finishHeaders(out, request, state)
    return out
  }

  /** The HTTP/1.1 exchange is over (answered, failed or cut): its body's size and the CLIENT span's end. */
  finished(error: Error | undefined, bodyBytes: number): void {
    this.state.responseBytes = bodyBytes
    // failed() has named the failure by now, if it answered one.
    if (this.client) this.client.end(error === undefined ? undefined : (this.state.upstreamError ?? this.state.denial?.reason ?? errorType(error)))
  }

  clientLeft(): void {
    // Node cut the client (limits.request_timeout): for the access line, not the upstream's failure.
    if ((this.request.raw.socket as { [TIMED_OUT]?: boolean } | null)?.[TIMED_OUT]) this.state.upstreamError = 'request_timeout'
  }

  failedMidAnswer(error: Error & { code?: string }): OutgoingHttpHeaders | undefined {
    const failure = failureOf(error)
    this.state.upstreamError = failure.reason
    // A gRPC call gets its status in the trailers; other answers are cut (the client must not
    // take what it got for the whole answer).
    return isGrpcRequest(this.request.raw.headers) ? grpcTrailers(failure) : undefined
  }

  failed(error: Error & { code?: string }): void {
    const { reply, state, forwarder } = this
    const id = this.request.id
    if (isBodyTooSlow(error)) {
      // limits.min_body_rate: the upstream request was aborted; the client's connection is closed after the answer.
      forwarder.metrics.clientTimeout('body_rate')
      const failure = fail('request_timeout', 'the request body came too slowly')
      state.upstreamError = failure.reason
      sendError(reply, failure, id)
      return
    }
    if (isUpstreamBusy(error)) {
      forwarder.metrics.upstreamQueueTimeout(this.forwarding.upstream)
      const failure = fail('upstream_busy')
      state.upstreamError = failure.reason
      // The body, if any, was not read: do not wait for it to keep the connection.
      const { headers } = this.request.raw
      if (headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined) reply.header('connection', 'close')
      sendError(reply, failure, id)
      return
    }
    if (isBodyTooLarge(error)) {
      // The upstream request was aborted mid-body; the rest of the client's body is not read.
      state.denial = bodyTooLarge(state.route!.maxBodyBytes)
      sendError(reply, state.denial, id)
      return
    }
    const failure = failureOf(error)
    state.upstreamError = failure.reason
    if (!(error instanceof Refusal))
      reply.log.warn({ upstream: this.forwarding.upstream, err: { code: error.code, message: error.message } }, 'upstream request failed')
    sendError(reply, failure, id)
  }
}

/** A forwarding error as the client is told it: timeouts (undici's codes, which the HTTP/2 forwarder gives too) 504, a denial as itself, the rest 502. */
function failureOf(error: Error & { code?: string }): ErrorAnswer {
  if (error instanceof Refusal) return error.answer
  // No head within `timeout`, no connection within the connect limit, a pause longer than `timeout`.
  const timedOut = error.code === 'UND_ERR_HEADERS_TIMEOUT' || error.code === 'UND_ERR_CONNECT_TIMEOUT' || error.code === 'UND_ERR_BODY_TIMEOUT'
  return fail(timedOut ? 'upstream_timeout' : 'upstream_unreachable')
}

/** What ended an exchange that failed() did not answer: the CLIENT span's error.type. */
function errorType(error: Error): string {
  if (error instanceof ClientGone) return 'client_closed'
  return 'upstream_response_incomplete'
}
