// Forwarding to the route's upstream with @fastify/reply-from over undici, with its unsafe
// defaults fixed (see ../shared/notes/dependencies.md §5): no retries, 502/504 instead of 500,
// hop-by-hop headers stripped both ways, upstream TLS verified, X-Forwarded-* set.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { IncomingHttpHeaders } from 'node:http'
import type { Metrics } from '../admin/metrics.js'
import type { Route } from '../policy/compile.js'
import type { RequestState } from '../gateway.js'

// RFC 9110 §7.6.1 hop-by-hop headers, plus ones undici refuses to send (keep-alive, upgrade,
// expect: it throws, which reply-from turns into a 500) and proxy credentials meant for us.
const HOP_BY_HOP_REQUEST = ['keep-alive', 'upgrade', 'expect', 'proxy-connection', 'te', 'trailer', 'proxy-authorization', 'http2-settings', 'transfer-encoding']
const HOP_BY_HOP_RESPONSE = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authenticate']

export function upstreamUrl(route: Route, path: string): string {
  return route.upstream.origin + route.upstream.basePath + path
}

/** reply-from options; one object per route, built once, since nothing in it depends on the request. */
export function forwardOptions(route: Route, metrics: Metrics): FastifyReplyFromHooks & { timeout: number } {
  return {
    timeout: route.upstream.timeoutMs,
    // reply-from retries a GET answered 503 up to ten times by default; a proxy must not.
    retryDelay: () => null,
    rewriteRequestHeaders: (request, headers) => requestHeaders(request as FastifyRequest, headers as IncomingHttpHeaders, route),
    rewriteHeaders: (headers, request) => {
      // Called when the upstream's response headers arrive: the upstream's share of the latency.
      const state = (request as FastifyRequest & { jwtgate: RequestState }).jwtgate
      if (state.forwardedAt !== undefined) metrics.upstream(route.upstream.name, (performance.now() - state.forwardedAt) / 1000)
      return responseHeaders(headers as IncomingHttpHeaders)
    },
    onError: (reply, { error }) => upstreamFailed(reply as unknown as FastifyReply, error),
  }
}

function requestHeaders(request: FastifyRequest, headers: IncomingHttpHeaders, route: Route): IncomingHttpHeaders {
  const state = (request as FastifyRequest & { jwtgate: RequestState }).jwtgate
  for (const name of HOP_BY_HOP_REQUEST) delete headers[name]
  state.policy.stripIdentityHeaders(headers)
  if (!route.forwardToken) delete headers.authorization
  // Computed by decide() from the verified claims; written after the client's copies were removed.
  if (state.identityHeaders) Object.assign(headers, state.identityHeaders)
  headers['x-request-id'] = request.id
  // Append the peer to the chain (as nginx's $proxy_add_x_forwarded_for does): the sidecar is
  // usually behind an ingress whose entries the upstream may want. Proto and host describe the
  // request as it reached us, so they are set, never taken from the client.
  const peer = request.raw.socket.remoteAddress ?? ''
  const chain = headers['x-forwarded-for']
  headers['x-forwarded-for'] = chain ? `${Array.isArray(chain) ? chain.join(', ') : chain}, ${peer}` : peer
  headers['x-forwarded-proto'] = 'encrypted' in request.raw.socket ? 'https' : 'http'
  const host = request.headers.host
  if (host) headers['x-forwarded-host'] = host
  else delete headers['x-forwarded-host']
  return headers
}

function responseHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const nominated = headers.connection
  if (typeof nominated === 'string') {
    for (const name of nominated.split(',')) delete headers[name.trim().toLowerCase()]
  }
  for (const name of HOP_BY_HOP_RESPONSE) delete headers[name]
  return headers
}

function upstreamFailed(reply: FastifyReply, error: Error & { statusCode?: number; code?: string }): void {
  const timedOut = error.statusCode === 504 || error.code === 'FST_REPLY_FROM_GATEWAY_TIMEOUT'
  const status = timedOut ? 504 : 502
  const state = (reply.request as FastifyRequest & { jwtgate: RequestState }).jwtgate
  state.upstreamError = timedOut ? 'upstream_timeout' : 'upstream_unreachable'
  reply.log.warn({ upstream: state.route?.upstream.name, err: { code: (error.cause as { code?: string } | undefined)?.code ?? error.code, message: error.message } }, 'upstream request failed')
  reply.code(status).header('cache-control', 'no-store').type('application/json').send({
    error: state.upstreamError,
    message: timedOut ? 'the upstream did not answer in time' : 'the upstream could not be reached',
    request_id: reply.request.id,
  })
}
