// The header names the gateway owns: the one list that extraction (which headers may carry a
// token), forwarding (what is never copied either way) and the policy compiler (what a claim or
// a prefix may never name) read, so the three cannot drift apart. Names are in lower case.

/**
 * Hop-by-hop request headers (RFC 9110 §7.6.1), plus ones undici refuses to send (keep-alive,
 * upgrade, expect: it throws on them) and proxy credentials meant for us. Never copied to the
 * upstream.
 */
export const HOP_BY_HOP_REQUEST: ReadonlySet<string> = new Set([
  'keep-alive',
  'upgrade',
  'expect',
  'proxy-connection',
  'te',
  'trailer',
  'proxy-authorization',
  'http2-settings',
  'transfer-encoding',
])

/** Hop-by-hop response headers: never copied back to the client. */
export const HOP_BY_HOP_RESPONSE: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authenticate',
])

/** Set on every forwarded request by the gateway itself, whatever the client sent. */
export const SET_BY_GATEWAY: readonly string[] = ['x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']

/**
 * W3C Trace Context (./trace_context.ts): read from the client, checked, and written by the
 * gateway, never copied as it came (a malformed or hostile value would otherwise reach the upstream).
 */
export const TRACE_CONTEXT: readonly string[] = ['traceparent', 'tracestate']

/** RFC 7239's header: the client's copy is passed on, but it describes the hops, never a caller. */
const FORWARDING: readonly string[] = ['forwarded']

/** Where a token reaches the gateway by default (RFC 6750 §2.1, §2.2 and cookies). */
export const TOKEN_CARRIERS: readonly string[] = ['authorization', 'cookie']

/**
 * RFC 9449's proof header: read by the gateway on routes that check DPoP proofs, and not passed
 * on from them unless the route says `forward_dpop_proof`. It never carries a token or a claim.
 */
export const DPOP_PROOF = 'dpop'

/** The message's own framing and addressing: whoever changes them changes what the request is. */
const MESSAGE_HEADERS: readonly string[] = ['host', 'content-length', 'content-type', 'transfer-encoding', 'connection']

/**
 * Headers some back ends and frameworks (IIS, Symfony, Laravel, method-override middleware) read
 * as the request's real path or method, or as the path prefix the app is mounted under (Spring's
 * ForwardedHeaderFilter and Traefik's X-Forwarded-Prefix, nginx's auth_request X-Original-URI,
 * Traefik's forward-auth X-Forwarded-Uri). The policy matched the path and method of the request
 * line, so a client must not name others to the upstream: always stripped, like identity headers.
 */
export const PATH_AND_METHOD_OVERRIDES: readonly string[] = [
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-forwarded-uri',
  'x-forwarded-prefix',
  'x-http-method-override',
  'x-method-override',
  'x-http-method',
]

/**
 * Lower case, `_` read as `-`: CGI-style back ends (PHP, WSGI) read `x_user_id` as `X-User-Id`,
 * so both spellings are one header to them.
 */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase()
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower
}

// What the gateway or the protocol needs as it is: none of these may carry a claim. (In this
// order, so a message names the most familiar header a prefix would cover: host before others.)
const OWNED: ReadonlySet<string> = new Set([
  'host',
  ...TOKEN_CARRIERS,
  ...MESSAGE_HEADERS,
  ...HOP_BY_HOP_REQUEST,
  ...HOP_BY_HOP_RESPONSE,
  ...SET_BY_GATEWAY,
  ...TRACE_CONTEXT,
  ...FORWARDING,
  ...PATH_AND_METHOD_OVERRIDES,
  DPOP_PROOF,
])

/** Whether a header, in either spelling, is the gateway's or the protocol's: no claim or payload may be written into it. */
export function isOwnedHeader(name: string): boolean {
  return OWNED.has(canonicalHeaderName(name))
}

// Credentials meant for the gateway may carry a token; the rest steer the proxy, frame the message
// or are set by the gateway. Cookie is read through `{ cookie: <name> }`, never whole.
const NOT_TOKEN_CARRIERS: ReadonlySet<string> = new Set([...OWNED].filter((h) => h !== 'authorization' && h !== 'proxy-authorization'))

/** Whether a `token_sources` header cannot carry a token (compared ignoring case). */
export function cannotCarryToken(name: string): boolean {
  return NOT_TOKEN_CARRIERS.has(name.toLowerCase())
}

/**
 * An owned header a `strip_header_prefixes` entry would strip, if any. The path and method
 * overrides are stripped anyway, so a prefix may cover them.
 */
export function ownedHeaderUnderPrefix(prefix: string): string | undefined {
  const canonical = canonicalHeaderName(prefix)
  for (const h of OWNED) if (!PATH_AND_METHOD_OVERRIDES.includes(h) && h.startsWith(canonical)) return h
  return undefined
}
