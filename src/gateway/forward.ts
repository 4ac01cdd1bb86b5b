// Forwarding an allowed request to its route's upstream with @fastify/reply-from over undici,
// with its unsafe defaults fixed (see ../shared/notes/dependencies.md §5): no retries, 502/504
// instead of 500, hop-by-hop headers stripped both ways, upstream TLS verified, X-Forwarded-* set.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Metrics } from '../admin/metrics.js'
import { fail } from '../http/denial.js'
import { sendError } from '../http/respond.js'
import type { Route } from '../policy/compile.js'
import { bodyTooLarge, isBodyTooLarge, isBodyTooSlow } from '../proxy/body_limit.js'
import { isUpstreamBusy } from '../proxy/upstream_pools.js'
import { TIMED_OUT } from './client_limits.js'
import { responseHeaders, upstreamRequestHeaders } from '../proxy/forward.js'
import { queryWithout } from '../proxy/token_removal.js'
import type { RequestState } from './request_state.js'

export type GatewayRequest = FastifyRequest & { jwtgate: RequestState }

/** What forwarding needs of one route, built when the gateway takes its policy, not per request. */
export interface RouteForwarding {
  /** reply-from's options: nothing in them depends on the request. */
  options: FastifyReplyFromHooks & { timeout: number }
}

export function routeForwarding(route: Route, metrics: Metrics): RouteForwarding {
  return { options: forwardOptions(route, metrics) }
}

function forwardOptions(route: Route, metrics: Metrics): FastifyReplyFromHooks & { timeout: number } {
  const tokenParameters = route.auth?.sources.queryNames ?? []
  return {
    // A token in the query never reaches the upstream (RFC 6750 §2.3, §5.3).
    ...(tokenParameters.length ? { queryString: (_search: string | undefined, url: string) => queryWithout(url, tokenParameters) } : {}),
    timeout: route.upstream.timeoutMs,
    // reply-from retries a GET answered 503 up to ten times by default; a proxy must not.
    retryDelay: () => null,
    rewriteRequestHeaders: (request, headers) => {
      const state = (request as GatewayRequest).jwtgate
      return headersForUpstream(headers as IncomingHttpHeaders, state, request.raw as IncomingMessage, request.id)
    },
    rewriteHeaders: (headers, request) => {
      // Called when the upstream's response headers arrive: the upstream's share of the latency.
      const state = (request as GatewayRequest).jwtgate
      if (state.forwardedAt !== undefined) metrics.upstream(route.upstream.name, (performance.now() - state.forwardedAt) / 1000)
      return responseHeaders(headers as IncomingHttpHeaders)
    },
    onError: (reply, { error }) => upstreamFailed(reply as unknown as FastifyReply, error, metrics),
  }
}

/** The headers the upstream receives for an allowed request: forwarded or tunnelled alike. */
export function headersForUpstream(headers: IncomingHttpHeaders, state: RequestState, raw: IncomingMessage, requestId: string): IncomingHttpHeaders {
  // Compiled with the route: a request only reads it.
  return upstreamRequestHeaders(headers, state.route!.headerCopy, state.identityHeaders, raw, state.policy.https, requestId)
}

function upstreamFailed(reply: FastifyReply, error: Error & { statusCode?: number; code?: string }, metrics: Metrics): void {
  const state = (reply.request as GatewayRequest).jwtgate
  if ((reply.request.raw.socket as { [TIMED_OUT]?: boolean } | null)?.[TIMED_OUT]) {
    // Node cut the client (limits.request_timeout), which ended the upstream request: not the upstream's failure.
    state.upstreamError = 'request_timeout'
    return
  }
  if (isBodyTooSlow(error)) {
    // limits.min_body_rate: the upstream request was aborted; the client's connection is closed after the answer.
    metrics.clientTimeout('body_rate')
    const failure = fail('request_timeout', 'the request body came too slowly')
    state.upstreamError = failure.reason
    sendError(reply, failure, reply.request.id)
    return
  }
  if (isUpstreamBusy(error)) {
    metrics.upstreamQueueTimeout(state.route!.upstream.name)
    const failure = fail('upstream_busy')
    state.upstreamError = failure.reason
    // The body, if any, was not read: do not wait for it to keep the connection.
    if (reply.request.headers['content-length'] !== undefined || reply.request.headers['transfer-encoding'] !== undefined) reply.header('connection', 'close')
    sendError(reply, failure, reply.request.id)
    return
  }
  if (isBodyTooLarge(error)) {
    // The upstream request was aborted mid-body; the rest of the client's body is not read.
    state.denial = bodyTooLarge(state.route!.maxBodyBytes)
    sendError(reply, state.denial, reply.request.id)
    return
  }
  const timedOut = error.statusCode === 504 || error.code === 'FST_REPLY_FROM_GATEWAY_TIMEOUT'
  const failure = fail(timedOut ? 'upstream_timeout' : 'upstream_unreachable')
  state.upstreamError = failure.reason
  reply.log.warn(
    { upstream: state.route?.upstream.name, err: { code: (error.cause as { code?: string } | undefined)?.code ?? error.code, message: error.message } },
    'upstream request failed',
  )
  sendError(reply, failure, reply.request.id)
}
