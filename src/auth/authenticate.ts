// Authentication for one route: extract → decode → pick the issuer by its (unverified) iss →
// key → verify → registered claims → revocation → the route's requirement (src/auth/requirement.ts).
// Each step returns a value or a Denial.
import { createDecoder, TokenError } from 'fast-jwt'
import { checkBinding, type BindingEnvironment, type BindingRequest, type BindingResult, type Bound, type Presented, type RouteBinding } from './binding.js'
import { checkTokenClaims, momentText } from './claims.js'
import { deny, failedCheck, isDenial, oneOf, type Denial } from '../http/denial.js'
import { extractToken, type FoundToken } from './extract.js'
import { canonicalParts } from './jws_encoding.js'
import type { Issuer, KeyLookup } from './issuer.js'
import type { IssuerSet } from './issuer_set.js'
import type { Requirement, TokenFacts } from './requirement.js'
import { type TokenCache, tokenKey } from './token_cache.js'
import type { TokenSources } from './token_sources.js'

export interface AuthRule {
  /** Every issuer some part of the route's requirement accepts; the token's `iss` picks one. */
  issuers: IssuerSet
  /** Where the route reads tokens, each source with the issuers that accept tokens from there. */
  sources: TokenSources
  requirement: Requirement
  /** `auth: { optional: true, … }`: a request without a token is let through anonymously. */
  optional?: boolean
  /** One-time tokens: a second use of the same jti is refused (`replay_protection: true`). */
  replayProtection?: boolean
  /** Sender-constrained tokens (`binding:` of the route or its issuers); absent when no token's cnf is checked here. */
  binding?: RouteBinding | null
}

/** Revoked tokens (src/revocation/); `check` is a local lookup, never I/O. */
export interface RevocationCheck {
  /** A denial when the token is revoked, or when the list cannot be trusted (503). */
  check(claims: Record<string, unknown>, now: number): Denial | undefined
  /** Records the first use of the token's jti; a denial for any later use. One backend round trip. */
  consumeOnce(claims: Record<string, unknown>): Promise<Denial | undefined>
}

/** What authentication needs from the policy as a whole. */
export interface AuthContext {
  maxTokenBytes: number
  tokens: TokenCache
  /** null (or absent) when the policy has no `revocation:` section. */
  revocation?: RevocationCheck | null
  /** What binding checks need (DPoP settings, the proof replay cache, the request's origin and certificate). */
  binding?: BindingEnvironment | null
}

/** A verified token: its issuer, claims and header typ; `token` is '' for claims given as verified. */
export interface Identity extends TokenFacts {
  token: string
  /** On a route that checks binding: how the token was sender-constrained. */
  bound?: Bound
  /** A newer DPoP nonce to hand the client with the answer (RFC 9449 §8.2). */
  nextNonce?: string
}

/**
 * A token refused once its issuer was chosen (by its iss): the issuer, for the status page's
 * figures and refusals, and, when only the route's requirement refused a verified token, who was
 * refused and the identity a `mode: report` route still forwards. It is not an Identity: nothing
 * can take it for permission.
 */
export interface Refused {
  /** The verified token the route's requirement refused; undefined when the token itself was. */
  identity: Identity | undefined
  issuer: Issuer
  denial: Denial
}

function refusedBy(issuer: Issuer, denial: Denial): Refused {
  return { identity: undefined, issuer, denial }
}

/** An optional route's request without a token: allowed, with no identity. */
export type Anonymous = null
export type AuthResult = Identity | Denial | Refused | Anonymous

export function isRefused(result: AuthResult): result is Refused {
  return result !== null && 'denial' in result
}

type Decoded = { header: Record<string, unknown>; payload: unknown }
const decode = createDecoder({ complete: true }) as (token: string) => Decoded

/**
 * Where the identity comes from: a request's raw headers and target (an IncomingMessage is
 * one), or claims taken as already verified, for offline evaluation by `jwtgate test` and `explain`.
 */
export type Credentials = BindingRequest | VerifiedClaims

/**
 * Claims taken as verified (`jwtgate test`, `explain --claims`). `sender`: what the request is
 * taken to prove of a bound token: a valid DPoP proof for its cnf.jkt (`dpop`), the certificate of
 * its cnf.x5t#S256 (`mtls`); without it, a bearer request without a certificate.
 */
export interface VerifiedClaims {
  claims: Record<string, unknown>
  sender?: ReadonlyArray<'dpop' | 'mtls'>
}

export function authenticate(credentials: Credentials, rule: AuthRule, context: AuthContext): AuthResult | Promise<AuthResult> {
  let result = authenticateToken(credentials, rule, context)
  // Replay protection costs a round trip to the backend, so only its routes pay it.
  if (rule.replayProtection && !('claims' in credentials))
    result = result instanceof Promise ? result.then((r) => useOnce(r, context)) : useOnce(result, context)
  // Where DPoP-bound tokens are accepted, a 401 says so (RFC 9449 §7.1).
  if (!rule.binding?.dpop || 'claims' in credentials) return result
  const binding = rule.binding
  const algs = context.binding!.dpop.algs
  return result instanceof Promise
    ? result.then((r) => withDpopChallenge(r, binding, algs, credentials))
    : withDpopChallenge(result, binding, algs, credentials)
}

function withDpopChallenge(result: AuthResult, binding: RouteBinding, algs: string, request: BindingRequest): AuthResult {
  if (!isDenial(result) || result.status !== 401) return result
  return { ...result, dpop: { algs, bearer: binding.bearer, used: usedDpopScheme(request.rawHeaders) } }
}

/** Whether the request's Authorization header uses the DPoP scheme (read again only for a refusal). */
function usedDpopScheme(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'authorization' && /^dpop /i.test(raw[i + 1] ?? '')) return true
  }
  return false
}

function useOnce(result: AuthResult, context: AuthContext): AuthResult | Promise<AuthResult> {
  if (result === null || isDenial(result) || isRefused(result) || !context.revocation) return result
  return context.revocation.consumeOnce(result.claims).then((denial) => (denial ? refusedBy(result.issuer, denial) : result))
}

function authenticateToken(credentials: Credentials, rule: AuthRule, context: AuthContext): AuthResult | Promise<AuthResult> {
  if ('claims' in credentials) return admitVerifiedClaims(credentials, rule, context)
  const found = extractToken(credentials.rawHeaders, credentials.url, rule.sources, context.maxTokenBytes)
  if (isDenial(found)) {
    // Optional means the token may be absent; one that is sent, even an empty one, is checked.
    return rule.optional && found.reason === 'missing_token' ? null : found
  }
  const { token, source } = found

  const now = Date.now()
  const cacheKey = tokenKey(token)
  const known = context.tokens.get(cacheKey, now)
  // A cached token still has to be acceptable on this route: its issuer allowed here (and from
  // this source), the route's requirement (audience included) checked again (it differs per
  // route, and costs little), and it must not have been revoked since it was cached. iat and
  // sub were checked when it was cached and a later clock cannot undo that.
  if (known && source.issuers.find(known.claims) === known.issuer) {
    // The binding is checked again too: a proof (and a connection) belongs to a request, never to a token.
    const revoked = context.revocation?.check(known.claims, now)
    if (revoked) return refusedBy(known.issuer, revoked)
    return bindThenRequire(rule, { token, issuer: known.issuer, claims: known.claims, typ: known.typ }, found, credentials, context, now)
  }

  // Once per token: a cached one was canonical (the cache is keyed by the token's digest).
  if (!canonicalParts(token)) return deny('malformed', 'the token is not a well-formed JWT')
  let decoded: Decoded
  try {
    decoded = decode(token)
  } catch {
    return deny('malformed', 'the token is not a well-formed JWT')
  }
  const { header, payload } = decoded
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return deny('malformed', 'the token payload is not a JSON object')
  }
  // The issuer is chosen before any key is looked up, and only among the issuers that accept
  // tokens from where this one was found.
  const issuer = source.issuers.find(payload as Record<string, unknown>)
  if (isDenial(issuer)) return issuer

  const alg = header.alg
  if (typeof alg !== 'string' || !issuer.algorithms.has(alg))
    return refusedBy(
      issuer,
      deny('bad_algorithm', 'the token algorithm is not allowed for its issuer', failedCheck('alg', alg, `must be ${oneOf(issuer.algorithms)}`)),
    )
  const kid = header.kid
  if (kid !== undefined && typeof kid !== 'string') return refusedBy(issuer, deny('malformed', 'the token kid is not a string'))

  const typ = typeof header.typ === 'string' ? header.typ : undefined

  const key = issuer.keyFor(kid, alg)
  if (key instanceof Promise) return key.then((k) => verifyWith(k, found, credentials, cacheKey, decoded, typ, issuer, rule, context))
  return verifyWith(key, found, credentials, cacheKey, decoded, typ, issuer, rule, context)
}

function verifyWith(
  key: KeyLookup,
  found: FoundToken,
  request: BindingRequest,
  cacheKey: string,
  decoded: Decoded,
  typ: string | undefined,
  issuer: Issuer,
  rule: AuthRule,
  context: AuthContext,
): AuthResult | Promise<AuthResult> {
  const token = found.token
  if (isDenial(key)) return refusedBy(issuer, key)
  let claims: Record<string, unknown>
  try {
    claims = key.verify(token)
  } catch (err) {
    return refusedBy(issuer, denialFor(err, decoded.payload as Record<string, unknown>, issuer.clockSkewMs))
  }
  // fast-jwt lets a falsy crit (null, false, 0, "") through; we understand no extension, so any
  // crit member at all refuses the token (RFC 7515 §4.1.11).
  if (Object.hasOwn(decoded.header, 'crit'))
    return refusedBy(issuer, deny('invalid_claims', 'the token has a critical header this gateway does not understand'))
  const now = Date.now()
  const invalid = checkTokenClaims(claims, issuer.clockSkewMs, now) ?? context.revocation?.check(claims, now)
  if (invalid) return refusedBy(issuer, invalid)
  // Cached once valid, before the route's own requirement: a token lacking a role or audience
  // here may carry all another route needs.
  context.tokens.set(token, cacheKey, issuer, key, claims, now, typ)
  return bindThenRequire(rule, { token, issuer, claims, typ }, found, request, context, now)
}

/** The binding (on routes that check it), then the route's requirement. */
function bindThenRequire(
  rule: AuthRule,
  identity: Identity,
  found: Presented,
  request: BindingRequest,
  context: AuthContext,
  now: number,
): Identity | Denial | Refused | Promise<Identity | Denial | Refused> {
  const binding = rule.binding
  if (!binding) return meetRequirement(rule, identity, now)
  const own = binding.rules.get(identity.issuer)
  if (!own) {
    // The DPoP scheme promises a proof that nobody would check for this issuer's tokens.
    if (found.scheme === 'dpop') return deny('binding_mismatch', "the token's issuer is not checked for DPoP binding on this route")
    return meetRequirement(rule, identity, now)
  }
  const result = checkBinding(own, identity.claims, identity.token, found, request, context.binding!, now)
  if (result instanceof Promise) return result.then((r) => boundThenRequire(rule, identity, r, now))
  return boundThenRequire(rule, identity, result, now)
}

function boundThenRequire(rule: AuthRule, identity: Identity, result: BindingResult | Denial, now: number): Identity | Denial | Refused {
  if (isDenial(result)) return result
  identity.bound = result.bound
  if (result.nextNonce) identity.nextNonce = result.nextNonce
  return meetRequirement(rule, identity, now)
}

/** The checks after signature verification, on claims given as verified (no header: typ is not checked). */
function admitVerifiedClaims(given: VerifiedClaims, rule: AuthRule, context: AuthContext): AuthResult | Promise<AuthResult> {
  const { claims } = given
  const issuer = rule.issuers.find(claims)
  if (isDenial(issuer)) return issuer
  const now = Date.now()
  const invalid = checkTokenClaims(claims, issuer.clockSkewMs, now)
  if (invalid) return refusedBy(issuer, invalid)
  const dpop = given.sender?.includes('dpop') === true
  const cnf = claims.cnf as Record<string, unknown> | undefined
  // What the request is said to prove, in the shape the checks read; no proof is verified or recorded.
  const presented: Presented = { scheme: dpop ? 'dpop' : 'bearer', proof: dpop ? '' : undefined, proofs: dpop ? 1 : 0 }
  const certificate = given.sender?.includes('mtls') && typeof cnf === 'object' && cnf !== null ? (cnf['x5t#S256'] as string | undefined) : undefined
  const request: BindingRequest = { rawHeaders: [], binding: { origin: '', certificate, assumeProof: true } }
  return bindThenRequire(rule, { token: '', issuer, claims, typ: null }, presented, request, context, now)
}

function meetRequirement(rule: AuthRule, identity: Identity, now: number): Identity | Refused {
  const denial = rule.requirement.check(identity, now)
  return denial ? { identity, issuer: identity.issuer, denial } : identity
}

function denialFor(err: unknown, payload: Record<string, unknown>, clockSkewMs: number): Denial {
  // An exp or nbf beyond a Date's range makes fast-jwt throw a RangeError while it words its
  // message, after the signature checked out: the comparison it was making still decides.
  if (err instanceof RangeError) return outOfRangeDate(payload) ?? deny('invalid_claims', 'a registered claim of the token has the wrong type or value')
  const code = err instanceof TokenError ? err.code : undefined
  switch (code) {
    case TokenError.codes.invalidSignature:
      return deny('bad_signature', 'the token signature is invalid')
    case TokenError.codes.invalidAlgorithm:
      return deny('bad_algorithm', 'the token algorithm is not allowed for its key')
    case TokenError.codes.expired:
      return deny(
        'expired',
        'the token has expired',
        failedCheck('exp', payload.exp, `must be after ${momentText(Date.now() - clockSkewMs)} (now, less the clock skew)`),
      )
    case TokenError.codes.inactive:
      return deny(
        'not_yet_valid',
        'the token is not valid yet',
        failedCheck('nbf', payload.nbf, `must be at most ${momentText(Date.now() + clockSkewMs)} (now, plus the clock skew)`),
      )
    case TokenError.codes.missingRequiredClaim:
      return (err as Error).message.includes('exp')
        ? deny('invalid_claims', 'the token has no exp claim', failedCheck('exp', undefined, 'must be present (require_exp)'))
        : deny('invalid_claims', 'the token lacks a required claim')
    case TokenError.codes.invalidClaimType:
    case TokenError.codes.invalidClaimValue:
      return deny('invalid_claims', 'a registered claim of the token has the wrong type or value')
    case TokenError.codes.invalidCritHeader:
      return deny('invalid_claims', 'the token has a critical header this gateway does not understand')
    case TokenError.codes.malformed:
    case TokenError.codes.invalidPayload:
    case TokenError.codes.missingSignature:
      return deny('malformed', 'the token is not a well-formed JWT')
    default:
      return deny('bad_signature', 'the token could not be verified')
  }
}

function outOfRangeDate(payload: Record<string, unknown>): Denial | undefined {
  const now = Date.now() / 1000
  if (typeof payload.exp === 'number' && payload.exp < now) return deny('expired', 'the token has expired')
  if (typeof payload.nbf === 'number' && payload.nbf > now) return deny('not_yet_valid', 'the token is not valid yet')
  return undefined
}
