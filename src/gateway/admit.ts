// The one way in, for HTTP requests and WebSocket upgrades alike: from the raw request to the
// decision, in order: https (require_https), the path, the route, a CORS preflight, the token
// and the route's requirement, the identity headers (decide(), shared with `explain` and
// `test`), then the checks that belong to the transport: an upgrade's Origin, a declared body
// length. What is left to the caller is its transport: forwarding, the tunnel, or the denial.
import type { IncomingMessage } from 'node:http'
import { decide } from '../decide.js'
import { deny } from '../http/denial.js'
import { declaredTooLarge } from '../proxy/body_limit.js'
import { allowsOrigin, preflightOf } from '../proxy/cors.js'
import { insecureRequest, requestScheme, type HttpsRule } from '../proxy/https_only.js'
import { h2RequestDenial } from './h2_request.js'
import type { RequestState } from './request_state.js'

/**
 * Writes the decision into `state` (made with newState): a denial, a preflight to answer, or
 * the route to forward to. Not async: a decision that needs no I/O (a cached key, a cached
 * token) costs no promise and no microtask.
 */
export function admit(raw: IncomingMessage, state: RequestState, upgrade: boolean): void | Promise<void> {
  // HTTP/2: the header list's size, and one host, from :authority, as HTTP/1.1's Host (./h2_request.ts).
  if (raw.httpVersionMajor === 2) state.denial = h2RequestDenial(raw, state.policy.maxHeaderBytes)
  state.denial ??= insecureRequest(raw, state.policy.https)
  if (state.denial) return
  // Node keeps the first of several Host headers; an upstream may read another (RFC 9112 §3.2: 400).
  if (hostCount(raw.rawHeaders) > 1) {
    state.denial = deny('bad_host', 'more than one Host header')
    return
  }
  const method = raw.method ?? 'GET'
  // An upgrade is a GET (src/gateway/websocket.ts lets no other through), never a preflight.
  const preflight = upgrade ? undefined : preflightOf(method, raw.headers)
  const pending = decide(state.policy, method, raw.headers.host, raw.url ?? '', raw, state, preflight)
  if (pending) return pending.then(() => afterDecision(raw, state, upgrade))
  afterDecision(raw, state, upgrade)
}

function hostCount(raw: readonly string[]): number {
  let n = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === 4 && name.toLowerCase() === 'host') n++
  }
  return n
}

/**
 * Whether a browser's Origin is the origin the request was sent to: the scheme the gateway saw
 * (or a trusted proxy's X-Forwarded-Proto) and the Host header, compared as URL parsing does
 * (case, default ports). `null` and anything unparseable are another origin.
 */
function sameOrigin(origin: string, raw: IncomingMessage, https: HttpsRule): boolean {
  const host = raw.headers.host
  if (!host) return false
  try {
    return new URL(origin).origin === new URL(`${requestScheme(raw, https)}://${host}`).origin
  } catch {
    return false
  }
}

function afterDecision(raw: IncomingMessage, state: RequestState, upgrade: boolean): void {
  const route = state.route
  if (state.denial || state.preflight || !route) return
  if (upgrade) {
    // Browsers send Origin on every WebSocket handshake and no preflight: with cors on the
    // route, its origins are what stops another site's page from opening a socket with the
    // user's cookies (cross-site WebSocket hijacking).
    const origin = raw.headers.origin
    if (route.cors && typeof origin === 'string' && !allowsOrigin(route.cors, origin)) {
      state.denial = deny('cors_rejected', 'the origin is not allowed by cors.origins')
    } else if (!route.cors && route.auth?.sources.cookies.length && typeof origin === 'string' && !sameOrigin(origin, raw, state.policy.https)) {
      // Without cors, a route that reads its token from a cookie would let any site's page open
      // a socket with the user's cookie: only the gateway's own origin may, unless cors allows others.
      state.denial = deny('cors_rejected', 'a cross-origin WebSocket on a route that reads its token from a cookie needs cors.origins to allow the origin')
    }
    // An upgrade's body is refused as a whole when it is served (src/gateway/websocket.ts).
    return
  }
  state.denial = declaredTooLarge(raw.headers['content-length'], route.maxBodyBytes)
}
