// A denial is a value, not an exception: each step of the request path returns one when the
// request must stop. Its `reason` is a closed set of codes, used alike in the response body,
// the access log and the metric label. A failure is the same kind of value for an answer that
// is no decision about the request: the upstream or the gateway could not serve it.
// src/http/respond.ts writes both.
export type DenyReason =
  | 'bad_path' // 400: the path cannot be normalized safely
  | 'bad_host' // 400: a Host header that is present but not one valid host (RFC 9112 §3.2)
  | 'no_route' // 404: nothing in the policy matches; never reaches an upstream
  | 'multiple_tokens' // 400: more than one Authorization header (RFC 6750 §2)
  | 'missing_token' // 401 without error code (RFC 6750 §3.1)
  | 'malformed' // 401: not a decodable JWS compact token
  | 'token_too_large' // 401
  | 'wrong_issuer' // 401: iss absent, not a string, or not accepted on this route
  | 'bad_algorithm' // 401: alg not in the issuer's allow-list or not usable with its key
  | 'unknown_kid' // 401: no key of the issuer has this kid, per a key set fetched since the kid was first seen
  | 'keys_unavailable' // 503: the issuer's keys could not be fetched, or the fetch that may bring the kid is due (Retry-After); not the token's fault
  | 'bad_signature' // 401
  | 'expired' // 401
  | 'not_yet_valid' // 401: nbf in the future
  | 'issued_in_future' // 401: iat in the future beyond the clock skew
  | 'wrong_audience' // 401: aud absent or none of the accepted audiences
  | 'invalid_claims' // 401: a registered claim is missing or of the wrong type, or a crit header we do not know
  | 'insufficient_claims' // 403: a valid token without the claims or scopes the route requires
  | 'revoked' // 401: the token's jti, or its subject before its iat, is revoked
  | 'replayed' // 401: a one-time token (replay_protection) used a second time
  | 'revocation_unavailable' // 503: the revocation list is not loaded, or its backend is down with fail_closed
  | 'wrong_type' // 401: the token's typ header is not one the route's requirement accepts
  | 'identity_too_large' // 403: an identity header value would exceed identity_header_max_bytes
  | 'cors_rejected' // 403: a CORS preflight for an origin, method or header the route's cors does not allow
  | 'https_required' // 403, or a 308 to https for GET and HEAD: require_https and the request came over plain HTTP
  | 'body_too_large' // 413: the request body is larger than the route's max_body_bytes
  | 'invalid_dpop_proof' // 401: the DPoP proof is missing, malformed or does not fit this request and token (RFC 9449 §4.3)
  | 'use_dpop_nonce' // 401: the DPoP proof needs the server nonce handed out in DPoP-Nonce (RFC 9449 §8)
  | 'proof_replayed' // 401: a DPoP proof (its jti) used a second time
  | 'proof_replay_unavailable' // 503: the DPoP proof replay cache cannot record the proof (redis down with fail_closed, or full)
  | 'binding_mismatch' // 401: the token is bound to a key or certificate this request does not prove, or it was sent as a bearer token
  | 'unbound_token' // 401: the route requires a sender-constrained token; this one is not bound
  | 'headers_too_large' // 431: an HTTP/2 request's header list is over limits.max_header_bytes (HTTP/1.1's is refused by Node's parser)

export interface Denial {
  status: 308 | 400 | 401 | 403 | 404 | 413 | 431 | 503
  reason: DenyReason
  /** Safe to show the client: says why, never echoes key material or the token. */
  description: string
  /** For 403: the scopes the route requires, to name in WWW-Authenticate. */
  scope?: string
  /** For 308 (https_required): where the client should go instead. */
  location?: string
  /** For 503: when to try again, in seconds, when the cause knows (Retry-After); 5 otherwise. */
  retryAfterS?: number
  /** For use_dpop_nonce: the nonce the client must put in its next proof (the DPoP-Nonce header). */
  nonce?: string
  /**
   * On a route that accepts DPoP-bound tokens: the DPoP challenge's `algs`, whether Bearer
   * tokens are accepted too (then both challenges), and whether the client used the DPoP scheme.
   */
  dpop?: { algs: string; bearer: boolean; used: boolean }
  /**
   * The check of the token that failed, with what the token had: for `jwtgate explain` and
   * `jwtgate test`. Never sent to the client or logged, since it holds the token's claims.
   */
  check?: FailedCheck
}

/** One failed check of a token: where it looked, what it found there, what it wanted. */
export interface FailedCheck {
  /** The claim read (`iss`, `aud`, `roles`), or the header field (`alg`, `typ`). */
  claim: string
  /** What the token had there; absent when it had nothing. */
  found?: unknown
  /** What was wanted, in words: `must be "https://idp.example.com/"`, `must contain "admin"`. */
  wanted: string
  /** For a check of exact values (iss, aud): the values accepted. */
  accepted?: readonly string[]
}

export function deny(reason: DenyReason, description: string, check?: FailedCheck): Denial {
  return check ? { status: STATUS[reason], reason, description, check } : { status: STATUS[reason], reason, description }
}

/** A failed check of `claim`, which held `found` (undefined when absent). */
export function failedCheck(claim: string, found: unknown, wanted: string, accepted?: readonly string[]): FailedCheck {
  return { claim, ...(found === undefined ? {} : { found }), wanted, ...(accepted ? { accepted } : {}) }
}

/** Accepted values as words: `"a"`, or `one of "a", "b"`. */
export function oneOf(values: Iterable<unknown>): string {
  const list = [...values].map((v) => JSON.stringify(v))
  return list.length === 1 ? list[0]! : `one of ${list.join(', ')}`
}

export type FailureReason =
  | 'upstream_unreachable' // 502: no connection, a reset, or an upstream that broke the protocol
  | 'upstream_timeout' // 504: no answer within the upstream's timeout (or its connect limit)
  | 'bad_request' // 400 (or the 4xx fastify gave): a request the gateway cannot process
  | 'internal_error' // 500: a bug of the gateway's
  | 'request_timeout' // 408: the client sent its headers or body too slowly (limits.headers_timeout, request_timeout, min_body_rate)
  | 'upstream_busy' // 503: no connection to the upstream became free within its timeout
  | 'deadline_exceeded' // 504: a gRPC call's own deadline (grpc-timeout) passed before its answer ended

export interface Failure {
  /** From the table, except for bad_request: the 4xx fastify chose. */
  status: number
  reason: FailureReason
  description: string
}

/** A failure with its status and message from the table; `description` replaces the message. */
export function fail(reason: FailureReason, description?: string): Failure {
  const [status, message] = FAILURE[reason]
  return { status, reason, description: description ?? message }
}

const FAILURE: Record<FailureReason, readonly [number, string]> = {
  upstream_unreachable: [502, 'the upstream could not be reached'],
  upstream_timeout: [504, 'the upstream did not answer in time'],
  bad_request: [400, 'the request could not be processed'],
  internal_error: [500, 'the gateway failed to process the request'],
  request_timeout: [408, 'the request was not received in time'],
  upstream_busy: [503, 'no connection to the upstream became free in time'],
  deadline_exceeded: [504, "the call's deadline passed before the upstream answered"],
}

/** Every error answer the gateway writes. */
export type ErrorAnswer = Denial | Failure

export function isFailure(answer: ErrorAnswer): answer is Failure {
  return Object.hasOwn(FAILURE, answer.reason)
}

const STATUS: Record<DenyReason, Denial['status']> = {
  bad_path: 400,
  bad_host: 400,
  no_route: 404,
  multiple_tokens: 400,
  missing_token: 401,
  malformed: 401,
  token_too_large: 401,
  wrong_issuer: 401,
  bad_algorithm: 401,
  unknown_kid: 401,
  keys_unavailable: 503,
  bad_signature: 401,
  expired: 401,
  not_yet_valid: 401,
  issued_in_future: 401,
  wrong_audience: 401,
  invalid_claims: 401,
  insufficient_claims: 403,
  revoked: 401,
  replayed: 401,
  revocation_unavailable: 503,
  wrong_type: 401,
  identity_too_large: 403,
  cors_rejected: 403,
  https_required: 403,
  body_too_large: 413,
  invalid_dpop_proof: 401,
  use_dpop_nonce: 401,
  proof_replayed: 401,
  proof_replay_unavailable: 503,
  binding_mismatch: 401,
  unbound_token: 401,
  headers_too_large: 431,
}

export function isDenial(value: unknown): value is Denial {
  return typeof value === 'object' && value !== null && 'reason' in value && 'status' in value
}

/**
 * The WWW-Authenticate challenge for a denial (RFC 6750 §3). A request with no token gets the
 * bare challenge; a bad token `invalid_token`; missing rights `insufficient_scope`; a request
 * that is malformed as a whole `invalid_request`. Statuses that are not about the token get none.
 */
export function challenge(denial: Denial): string | undefined {
  const realm = 'Bearer realm="jwtgate"'
  switch (denial.status) {
    case 401:
      // A refusal of the DPoP proof, or of a token sent with the DPoP scheme, is said in the DPoP challenge.
      if (denial.reason === 'missing_token' || (denial.dpop && (denial.dpop.used || DPOP_ERRORS[denial.reason]))) return realm
      return `${realm}, error="invalid_token", error_description="${quoted(denial.description)}"`
    case 403:
      // Refusals that are not about the token carry no challenge.
      if (denial.reason === 'cors_rejected' || denial.reason === 'https_required') return undefined
      // Not a matter of scope: the token is fine, the gateway cannot pass its identity on.
      if (denial.reason === 'identity_too_large') return `${realm}, error_description="${quoted(denial.description)}"`
      return (
        `${realm}, error="insufficient_scope", error_description="${quoted(denial.description)}"` + (denial.scope ? `, scope="${quoted(denial.scope)}"` : '')
      )
    case 400:
      if (denial.reason === 'multiple_tokens') return `${realm}, error="invalid_request", error_description="${quoted(denial.description)}"`
      return undefined
    case 503:
      // Not the token's fault, so no error code; the description says what happened.
      return `${realm}, error_description="${quoted(denial.description)}"`
    default:
      return undefined
  }
}

const DPOP_ERRORS: Partial<Record<DenyReason, string>> = {
  invalid_dpop_proof: 'invalid_dpop_proof',
  proof_replayed: 'invalid_dpop_proof',
  use_dpop_nonce: 'use_dpop_nonce',
}

/**
 * RFC 9449 §7.1: the DPoP challenge of a 401 on a route that accepts DPoP-bound tokens, with the
 * proof algorithms it takes. It carries the error when the proof was refused, or when the token
 * came with the DPoP scheme; otherwise the Bearer challenge does. Where the route also takes
 * bearer tokens, both challenges are sent (§7.2).
 */
export function dpopChallenge(denial: Denial): string | undefined {
  if (!denial.dpop || denial.status !== 401) return undefined
  const algs = `algs="${denial.dpop.algs}"`
  // Where bearer tokens are not accepted, the DPoP challenge is the only one: it says what was wrong.
  const tokenError = (denial.dpop.used || !denial.dpop.bearer) && denial.reason !== 'missing_token'
  const error = DPOP_ERRORS[denial.reason] ?? (tokenError ? 'invalid_token' : undefined)
  if (!error) return `DPoP realm="jwtgate", ${algs}`
  return `DPoP realm="jwtgate", error="${error}", error_description="${quoted(denial.description)}", ${algs}`
}

// RFC 6750 §3: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
function quoted(text: string): string {
  return text.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '')
}
