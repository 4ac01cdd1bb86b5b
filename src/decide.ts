// The decision for one request, the same for the proxy, `jwtgate explain` and `jwtgate test`:
// normalize the path → match a route → authenticate and authorize → the identity headers to
// send. Only forwarding is left to the caller. The outcome is written into `out` (the proxy
// passes its per-request state).
import { authenticate, isRefused, type AuthResult, type Credentials, type Identity } from './auth/authenticate.js'
import type { Issuer } from './auth/issuer.js'
import { deny, isDenial, type Denial } from './http/denial.js'
import type { CompiledPolicy, Route } from './policy/compile.js'
import { identityHeaders } from './proxy/identity_headers.js'
import { refusePreflight, type Preflight } from './proxy/cors.js'
import { normalizePath, splitTarget } from './routing/normalize.js'
import { hostFromHeader } from './routing/route_table.js'

export interface Decision {
  /** The normalized path: what the route matched and what the upstream will see. */
  path?: string
  route?: Route
  /** The verified token the identity headers come from; absent without one (auth: none, an optional route's anonymous request). */
  identity?: Identity
  /** The issuer the token was checked against (chosen by its iss), accepted or refused: the status page counts and lists by it. */
  issuer?: Issuer
  /** A verified token the route's requirement refused: what `explain` checks again for every check it fails. Never an identity. */
  refused?: Identity
  /** The identity headers to set upstream, by lower-case name. */
  identityHeaders?: Record<string, string>
  /** Set when the request must stop; absent means allowed. */
  denial?: Denial
  /** On a `mode: report` route: the denial the route would have given. The request goes on. */
  reported?: Denial
  /**
   * A CORS preflight the gateway answers itself (204, or the denial `cors_rejected`); `route`
   * is then the route of the request the preflight asks about. Nothing is forwarded.
   */
  preflight?: boolean
}

/** `preflight`: the request's Origin and Access-Control-Request-* headers, when it is an OPTIONS preflight. */
export function decide(
  policy: CompiledPolicy,
  method: string,
  hostHeader: string | undefined,
  target: string,
  credentials: Credentials,
  out: Decision,
  preflight?: Preflight,
): void | Promise<void> {
  const normalized = normalizePath(splitTarget(target).path, { rejectPathParameters: policy.rejectPathParameters })
  if (!normalized.ok) {
    out.denial = deny('bad_path', `the request path is not acceptable: ${normalized.reason}`)
    return
  }
  out.path = normalized.path

  const host = hostFromHeader(hostHeader)
  // A Host that is there but not valid (`a.example.com, evil`, `a.example.com:abc`, `:1:2`, empty)
  // would match no host pattern and fall through to a host-less route, while an upstream that
  // reads it its own way serves the host the route was meant to protect: refused, like
  // RFC 9112 §3.2 says. (Absent is fine: HTTP/1.0 has none, and Node refuses HTTP/1.1 without.)
  if (host === '' && hostHeader !== undefined) {
    out.denial = deny('bad_host', 'the Host header is not a valid host')
    return
  }
  // A preflight carries no token. It is answered here when the request it asks about would use
  // a route with CORS; otherwise it is an OPTIONS request like any other.
  if (preflight) {
    const actual = policy.routes.match(preflight.method, host, normalized.path)
    if (actual?.value.cors) {
      out.route = actual.value
      out.preflight = true
      out.denial = refusePreflight(actual.value.cors, preflight)
      return
    }
  }

  const match = policy.routes.match(method, host, normalized.path)
  if (!match) {
    out.denial = deny('no_route', 'no route of the policy matches this request')
    return
  }
  const route = match.value
  out.route = route
  // Refused after the match, not by normalizePath, so that a route can opt out.
  if (normalized.ambiguous !== undefined && !route.allowAmbiguousPaths) {
    out.denial = deny('bad_path', `the request path is not acceptable: ${normalized.ambiguous}`)
    return
  }
  if (!route.auth) return

  const result = authenticate(credentials, route.auth, policy.auth)
  if (result instanceof Promise) return result.then((r) => settle(out, route, r))
  settle(out, route, result)
}

function settle(out: Decision, route: Route, result: AuthResult): void {
  if (result === null) return // an optional route's request without a token: anonymous
  if (!isDenial(result)) out.issuer = result.issuer
  if (isRefused(result)) out.refused = result.identity
  const identity = isDenial(result) ? undefined : isRefused(result) ? result.identity : result
  let denial = isDenial(result) ? result : isRefused(result) ? result.denial : undefined
  // Identity headers for an allowed request; on a report route also for a verified token that
  // failed the requirement, since that request is forwarded too.
  if (identity && (!denial || route.report)) {
    const headers = identityHeaders(identity.claims, route.identity, identity.bound)
    if (isDenial(headers)) {
      denial ??= headers
    } else {
      out.identity = identity
      out.identityHeaders = headers
    }
  }
  if (!denial) return
  if (route.report) out.reported = denial
  else out.denial = denial
}
