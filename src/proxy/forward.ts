// Forwarding to the route's upstream with @fastify/reply-from over undici, with its unsafe
// defaults fixed (see ../shared/notes/dependencies.md §5): no retries, 502/504 instead of 500,
// hop-by-hop headers stripped both ways, upstream TLS verified, X-Forwarded-* set.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Metrics } from '../admin/metrics.js'
import type { Route } from '../policy/compile.js'
import { bodyTooLarge, isBodyTooLarge } from './body_limit.js'
import { requestScheme } from './https_only.js'
import { cookiesWithout, queryWithout } from './token_removal.js'
import type { RequestState } from '../gateway.js'
import { HOP_BY_HOP_REQUEST, HOP_BY_HOP_RESPONSE, SET_BY_GATEWAY } from '../http/owned_headers.js'


export function upstreamUrl(route: Route, path: string): string {
  return route.upstream.origin + route.upstream.basePath + path
}

/** reply-from options; one object per route, built once, since nothing in it depends on the request. */
export function forwardOptions(route: Route, metrics: Metrics): FastifyReplyFromHooks & { timeout: number } {
  const tokenParameters = route.auth?.sources.queryNames ?? []
  return {
    // A token in the query never reaches the upstream (RFC 6750 §2.3, §5.3).
    ...(tokenParameters.length ? { queryString: (_search: string | undefined, url: string) => queryWithout(url, tokenParameters) } : {}),
    timeout: route.upstream.timeoutMs,
    // reply-from retries a GET answered 503 up to ten times by default; a proxy must not.
    retryDelay: () => null,
    rewriteRequestHeaders: (request, headers) => {
      const state = (request as FastifyRequest & { jwtgate: RequestState }).jwtgate
      return upstreamRequestHeaders(headers as IncomingHttpHeaders, state, request.raw as IncomingMessage, request.id)
    },
    rewriteHeaders: (headers, request) => {
      // Called when the upstream's response headers arrive: the upstream's share of the latency.
      const state = (request as FastifyRequest & { jwtgate: RequestState }).jwtgate
      if (state.forwardedAt !== undefined) metrics.upstream(route.upstream.name, (performance.now() - state.forwardedAt) / 1000)
      return responseHeaders(headers as IncomingHttpHeaders)
    },
    onError: (reply, { error }) => upstreamFailed(reply as unknown as FastifyReply, error),
  }
}

const NOT_COPIED = new Set([...HOP_BY_HOP_REQUEST, ...SET_BY_GATEWAY])

/** What one route never copies upstream, and the token cookies it cuts out of Cookie. */
interface RouteCopy {
  skipped: ReadonlySet<string>
  tokenCookies: readonly string[] | undefined
}

// Per route, made on its first request: a request only reads it.
const copyByRoute = new WeakMap<Route, RouteCopy>()

function routeCopy(route: Route): RouteCopy {
  let copy = copyByRoute.get(route)
  if (!copy) {
    // Unless the route forwards its token, the headers that carry it are not copied either
    // (Authorization on a route without auth: a token meant for us is not the upstream's).
    const sources = route.auth?.sources
    const tokenHeaders = route.forwardToken ? [] : sources ? sources.headers.map((s) => s.name) : ['authorization']
    const tokenCookies = !route.forwardToken && sources?.cookies.length ? sources.cookieNames : undefined
    copyByRoute.set(route, (copy = { skipped: new Set([...NOT_COPIED, ...tokenHeaders]), tokenCookies }))
  }
  return copy
}

/**
 * The headers the upstream receives, from the client's with its Connection nominations
 * already removed: for forwarded requests and for WebSocket upgrades alike.
 * Both rewrites build a new object, leaving out what must not be sent, instead of deleting from
 * one: a delete drops a V8 object into dictionary mode, and the deletes were a few per cent of a
 * request's CPU in the benchmark's profile. Header names from Node and from undici are in lower case.
 */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, state: RequestState, raw: IncomingMessage, requestId: string): IncomingHttpHeaders {
  const { skipped, tokenCookies } = routeCopy(state.route!)
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (skipped.has(name)) continue
    const value = headers[name]
    if (name === 'cookie' && tokenCookies && typeof value === 'string') {
      const rest = cookiesWithout(value, tokenCookies)
      if (rest !== undefined) out.cookie = rest
      continue
    }
    out[name] = value
  }
  // Deletes nothing unless the client sent a header only the gateway may set.
  state.policy.stripIdentityHeaders(out)
  // Computed by decide() from the verified claims; written after the client's copies were removed.
  const identity = state.identityHeaders
  if (identity) for (const name in identity) out[name] = identity[name]
  out['x-request-id'] = requestId
  // Append the peer to the chain (as nginx's $proxy_add_x_forwarded_for does): the sidecar is
  // usually behind an ingress whose entries the upstream may want. Proto and host describe the
  // request as it reached us, so they are set, never taken from the client.
  const peer = raw.socket.remoteAddress ?? ''
  const chain = headers['x-forwarded-for']
  out['x-forwarded-for'] = chain ? `${Array.isArray(chain) ? chain.join(', ') : chain}, ${peer}` : peer
  out['x-forwarded-proto'] = requestScheme(raw, state.policy.https)
  const host = raw.headers.host
  if (host) out['x-forwarded-host'] = host
  return out
}

export function responseHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  // Headers the upstream's Connection header nominates are hop-by-hop too (RFC 9110 §7.6.1).
  const connection = headers.connection
  const nominated = typeof connection === 'string' && connection !== 'keep-alive' && connection !== 'close'
    ? new Set(connection.split(',').map((name) => name.trim().toLowerCase()))
    : undefined
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP_RESPONSE.has(name) || nominated?.has(name)) continue
    out[name] = headers[name]
  }
  return out
}

function upstreamFailed(reply: FastifyReply, error: Error & { statusCode?: number; code?: string }): void {
  const state = (reply.request as FastifyRequest & { jwtgate: RequestState }).jwtgate
  if (isBodyTooLarge(error)) {
    // The upstream request was aborted mid-body; the rest of the client's body is not read.
    state.denial = bodyTooLarge(state.route!.maxBodyBytes)
    reply.code(413).header('connection', 'close').header('cache-control', 'no-store').type('application/json')
      .send({ error: state.denial.reason, message: state.denial.description, request_id: reply.request.id })
    return
  }
  const timedOut = error.statusCode === 504 || error.code === 'FST_REPLY_FROM_GATEWAY_TIMEOUT'
  const status = timedOut ? 504 : 502
  state.upstreamError = timedOut ? 'upstream_timeout' : 'upstream_unreachable'
  reply.log.warn({ upstream: state.route?.upstream.name, err: { code: (error.cause as { code?: string } | undefined)?.code ?? error.code, message: error.message } }, 'upstream request failed')
  reply.code(status).header('cache-control', 'no-store').type('application/json').send({
    error: state.upstreamError,
    message: timedOut ? 'the upstream did not answer in time' : 'the upstream could not be reached',
    request_id: reply.request.id,
  })
}
