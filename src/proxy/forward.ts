// What forwarding does to headers, from explicit inputs (no route, no request state): the
// client's headers the upstream receives, the upstream's headers the client receives, hop-by-hop
// headers stripped both ways (RFC 9110 §7.6.1), X-Forwarded-* set. src/gateway/forward.ts
// sends requests with these, src/gateway/websocket.ts opens the WebSocket tunnel with them.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { TokenSources } from '../auth/token_sources.js'
import { requestScheme, type HttpsRule } from './https_only.js'
import { cookiesWithout } from './token_removal.js'
import { DPOP_PROOF, HOP_BY_HOP_REQUEST, HOP_BY_HOP_RESPONSE, SET_BY_GATEWAY, TRACE_CONTEXT } from '../http/owned_headers.js'
import type { TraceHeaders } from '../tracing/tracing.js'

/** Where a route forwards a normalized path. */
export function upstreamUrl(route: { upstream: { origin: string; basePath: string } }, path: string): string {
  return route.upstream.origin + route.upstream.basePath + path
}

// Hop-by-hop and the headers the gateway sets itself, whatever the client sent.
const NOT_COPIED = new Set([...HOP_BY_HOP_REQUEST, ...SET_BY_GATEWAY, ...TRACE_CONTEXT])

/** What one route never copies upstream, and the token cookies it cuts out of Cookie. */
export interface HeaderCopy {
  skipped: ReadonlySet<string>
  tokenCookies: readonly string[] | undefined
  /** Removes the identity headers a client sent (the policy's headerStripper). */
  stripIdentityHeaders: (headers: IncomingHttpHeaders) => void
}

/** Built once per route: `sources` are the route's token sources (undefined without auth); `withholdProof` leaves the DPoP header out. */
export function headerCopy(
  sources: TokenSources | undefined,
  forwardToken: boolean,
  stripIdentityHeaders: HeaderCopy['stripIdentityHeaders'],
  withholdProof = false,
): HeaderCopy {
  // Unless the route forwards its token, the headers that carry it are not copied either
  // (Authorization on a route without auth: a token meant for us is not the upstream's).
  const tokenHeaders = forwardToken ? [] : sources ? sources.headers.map((s) => s.name) : ['authorization']
  // On a route with auth, an Authorization header it does not read (a cookie or X-Token route)
  // is a token nobody checked: never passed on beside the verified one, whatever forward_token
  // says. (A route reading Authorization refuses one without its prefix: src/auth/extract.ts.)
  if (sources && !sources.headers.some((s) => s.name === 'authorization')) tokenHeaders.push('authorization')
  if (withholdProof) tokenHeaders.push(DPOP_PROOF)
  const tokenCookies = !forwardToken && sources?.cookies.length ? sources.cookieNames : undefined
  return { skipped: new Set([...NOT_COPIED, ...tokenHeaders]), tokenCookies, stripIdentityHeaders }
}

/**
 * The headers the upstream receives, from the client's: for forwarded requests and for
 * WebSocket upgrades alike. Connection and the headers it nominates are left out before the
 * gateway writes its own, so a client cannot nominate those away (RFC 9110 §7.6.1).
 * Both rewrites build a new object, leaving out what must not be sent, instead of deleting from
 * one: a delete drops a V8 object into dictionary mode, and the deletes were a few per cent of a
 * request's CPU in the benchmark's profile. Header names from Node and from undici are in lower case.
 */
export function upstreamRequestHeaders(
  headers: IncomingHttpHeaders,
  copy: HeaderCopy,
  identity: Readonly<Record<string, string>> | undefined,
  raw: IncomingMessage,
  https: HttpsRule,
  requestId: string,
  trace?: TraceHeaders,
): IncomingHttpHeaders {
  const { skipped, tokenCookies } = copy
  const nominated = nominatedBy(headers.connection)
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    // HTTP/2's pseudo-header fields (:method, :path, :authority, :scheme) are the request line's,
    // which the forwarder writes itself.
    if (skipped.has(name) || name === 'connection' || nominated?.has(name) || name.charCodeAt(0) === 58) continue
    const value = headers[name]
    if (name === 'cookie' && tokenCookies && typeof value === 'string') {
      const rest = cookiesWithout(value, tokenCookies)
      if (rest !== undefined) out.cookie = rest
      continue
    }
    out[name] = value
  }
  // Deletes nothing unless the client sent a header only the gateway may set.
  copy.stripIdentityHeaders(out)
  // Computed by decide() from the verified claims; written after the client's copies were removed.
  if (identity) for (const name in identity) out[name] = identity[name]
  out['x-request-id'] = requestId
  // The trace context the upstream continues: the gateway's CLIENT span, or the client's own
  // context checked (src/http/trace_context.ts); none when neither exists.
  if (trace) {
    out.traceparent = trace.traceparent
    if (trace.tracestate !== undefined) out.tracestate = trace.tracestate
  }
  // Append the peer to the chain (as nginx's $proxy_add_x_forwarded_for does): the sidecar is
  // usually behind an ingress whose entries the upstream may want. Proto and host describe the
  // request as it reached us, so they are set, never taken from the client.
  const peer = raw.socket.remoteAddress ?? ''
  // A chain the client's Connection nominated is hop-by-hop: not passed on.
  const chain = nominated?.has('x-forwarded-for') ? undefined : headers['x-forwarded-for']
  out['x-forwarded-for'] = chain ? `${Array.isArray(chain) ? chain.join(', ') : chain}, ${peer}` : peer
  out['x-forwarded-proto'] = requestScheme(raw, https)
  // Only a Host that decide() (src/decide.ts) found valid gets this far, one of them (src/gateway/admit.ts).
  const host = raw.headers.host
  if (host) out['x-forwarded-host'] = host
  return out
}

/** The header names a Connection header nominates (lower case); undefined for none, the usual case. */
function nominatedBy(connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined || connection === 'keep-alive' || connection === 'close') return undefined
  const names = (Array.isArray(connection) ? connection.join(',') : connection).split(',')
  return new Set(names.map((name) => name.trim().toLowerCase()))
}

/** The upstream's answer headers the client receives; an HTTP/2 upstream's pseudo-header fields (`:status`) are left out too. */
export function responseHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  // Headers the upstream's Connection header nominates are hop-by-hop too (RFC 9110 §7.6.1).
  const nominated = nominatedBy(headers.connection)
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP_RESPONSE.has(name) || nominated?.has(name) || name.charCodeAt(0) === 58) continue
    out[name] = headers[name]
  }
  return out
}

/** A copy of the client's headers without Connection and the headers it nominates (RFC 9110 §7.6.1). */
export function withoutNominated(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const copy = { ...headers }
  const nominated = copy.connection
  delete copy.connection
  if (typeof nominated === 'string') for (const name of nominated.split(',')) delete copy[name.trim().toLowerCase()]
  return copy
}
