// Sender-constrained tokens: a token whose `cnf` binds it to a key the client holds is accepted
// only from that client. `cnf.jkt` (RFC 9449 §6.1): the request carries a DPoP proof signed with
// the key of that thumbprint (src/auth/dpop.ts). `cnf.x5t#S256` (RFC 8705 §3.1): the client
// presented the certificate of that thumbprint on its TLS connection (or a trusted proxy says
// so). Run on every request after the token is verified or found in the token cache: the proof
// and the connection are the request's, never the token's.
import { deny, isDenial, type Denial } from '../http/denial.js'
import { verifyProof, type DpopSettings } from './dpop.js'
import type { BindingMethod, BindingRule } from './binding_rule.js'
import type { Issuer } from './issuer.js'
import type { ProofReplay } from './replay.js'

/** A route's bindings by issuer (its own `binding`, else each issuer's); only issuers whose tokens are checked. */
export interface RouteBinding {
  readonly rules: ReadonlyMap<Issuer, BindingRule>
  /** Some issuer's tokens may come with the DPoP scheme: the extractor reads it, and 401s carry the DPoP challenge. */
  readonly dpop: boolean
  /** Some issuer's tokens may come as bearer tokens: 401s carry the Bearer challenge too. */
  readonly bearer: boolean
}

/** How the token of a request was presented: the Authorization scheme, and the request's DPoP headers. */
export interface Presented {
  readonly scheme: 'bearer' | 'dpop'
  /** The first DPoP header's value. */
  readonly proof: string | undefined
  /** How many DPoP headers the request carried (exactly one is allowed). */
  readonly proofs: number
}

/** What the binding checks read of a request: Node's IncomingMessage, or what `explain` gives in its place. */
export interface BindingRequest {
  rawHeaders: string[]
  url?: string | undefined
  method?: string | undefined
  /**
   * Given instead of a connection (`explain`, `test`): the origin the client addressed, and its
   * certificate's thumbprint. `assumeProof`: a DPoP proof is taken as valid for the token (claims
   * given as verified have no token to prove), and nothing is recorded.
   */
  binding?: { origin: string; certificate?: string | undefined; assumeProof?: boolean }
}

/** What the checks need of the gateway, compiled with the policy. */
export interface BindingEnvironment {
  readonly dpop: DpopSettings
  readonly replay: ProofReplay
  /** `scheme://authority` of the request as its client addressed it (behind trusted_proxies, as they say). */
  origin(request: BindingRequest): string
  /** base64url SHA-256 of the DER of the client's certificate on this connection, or from a trusted proxy's header; undefined: none. */
  certificate(request: BindingRequest): string | undefined
}

/** How the token was sender-constrained, for the binding header: `none` for an unbound token. */
export type Bound = 'none' | 'dpop' | 'mtls' | 'dpop mtls'

export interface BindingResult {
  bound: Bound
  /** A newer DPoP nonce to hand the client with the answer. */
  nextNonce?: string | undefined
}

const NONE: BindingResult = Object.freeze({ bound: 'none' })

/** Checks a verified token's `cnf` against the request. `token` is the access token as sent (for the proof's ath). */
export function checkBinding(
  rule: BindingRule,
  claims: Record<string, unknown>,
  token: string,
  presented: Presented,
  request: BindingRequest,
  env: BindingEnvironment,
  now: number,
): BindingResult | Denial | Promise<BindingResult | Denial> {
  const cnf = claims.cnf
  if (cnf === undefined) {
    if (presented.scheme === 'dpop') return deny('binding_mismatch', 'the token sent with the DPoP scheme is not DPoP-bound')
    return rule.required ? deny('unbound_token', unboundMessage(rule.method)) : NONE
  }
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return deny('binding_mismatch', 'the token cnf claim is not an object')
  const jkt = (cnf as Record<string, unknown>).jkt
  const x5t = (cnf as Record<string, unknown>)['x5t#S256']
  if (jkt === undefined && x5t === undefined) {
    // Bound some other way (a cnf.jwk, cnf.kid, …) the gateway cannot check: not a bearer token either.
    if (Object.keys(cnf).length > 0) return deny('binding_mismatch', 'the token is bound by a confirmation method this gateway does not check')
    return rule.required ? deny('unbound_token', unboundMessage(rule.method)) : NONE
  }
  if (presented.scheme === 'dpop' && jkt === undefined) return deny('binding_mismatch', 'the token sent with the DPoP scheme is not DPoP-bound')

  let proof: { jkt: string; jti: string; iat: number; nextNonce?: string } | undefined
  if (jkt !== undefined) {
    if (typeof jkt !== 'string') return deny('binding_mismatch', 'the token cnf.jkt is not a string')
    if (rule.method !== 'dpop' && rule.method !== 'any') return deny('binding_mismatch', 'the token is DPoP-bound (cnf.jkt), which this route does not check')
    // RFC 9449 §7.2: a DPoP-bound token used as a bearer token is a downgrade.
    if (presented.scheme !== 'dpop') return deny('binding_mismatch', 'the token is DPoP-bound: send it with the DPoP scheme and a DPoP proof')
    if (presented.proofs === 0 || presented.proof === undefined) return deny('invalid_dpop_proof', 'a DPoP proof is required with the DPoP scheme')
    if (presented.proofs > 1) return deny('invalid_dpop_proof', 'more than one DPoP header')
    if (request.binding?.assumeProof) return x5t === undefined ? DPOP : (checkCertificate(rule, x5t, request, env) ?? DPOP_MTLS)
    const url = request.binding?.origin ?? env.origin(request)
    const verified = verifyProof(presented.proof, { method: request.method ?? 'GET', url: url + pathOf(request.url), accessToken: token }, env.dpop, now)
    if (isDenial(verified)) return verified
    if (verified.jkt !== jkt) return deny('binding_mismatch', 'the DPoP proof key is not the key the token is bound to')
    proof = verified
  }
  if (x5t !== undefined) {
    const denial = checkCertificate(rule, x5t, request, env)
    if (denial) return denial
  }
  if (!proof) return MTLS
  const result: BindingResult = { bound: x5t === undefined ? 'dpop' : 'dpop mtls', nextNonce: proof.nextNonce }
  // Last, so that a proof refused for another reason is not used up. Kept while its iat is acceptable.
  const ttlMs = proof.iat * 1000 + env.dpop.maxAgeMs - now + 1000
  const first = env.replay.firstUse(`${proof.jkt}:${proof.jti}`, ttlMs, now)
  return first instanceof Promise ? first.then((f) => afterReplayCheck(f, result)) : afterReplayCheck(first, result)
}

/** RFC 8705 §3.1: the certificate of this request is the one the token names. */
function checkCertificate(rule: BindingRule, x5t: unknown, request: BindingRequest, env: BindingEnvironment): Denial | undefined {
  if (typeof x5t !== 'string') return deny('binding_mismatch', 'the token cnf.x5t#S256 is not a string')
  if (rule.method !== 'mtls' && rule.method !== 'any')
    return deny('binding_mismatch', 'the token is bound to a client certificate (cnf.x5t#S256), which this route does not check')
  const presented = request.binding ? request.binding.certificate : env.certificate(request)
  if (presented === undefined) return deny('binding_mismatch', 'the token is bound to a client certificate; none was presented')
  if (presented !== x5t) return deny('binding_mismatch', 'the client certificate is not the one the token is bound to')
  return undefined
}

const MTLS: BindingResult = Object.freeze({ bound: 'mtls' })
const DPOP: BindingResult = Object.freeze({ bound: 'dpop' })
const DPOP_MTLS: BindingResult = Object.freeze({ bound: 'dpop mtls' })
const REPLAYED: Denial = Object.freeze(deny('proof_replayed', 'the DPoP proof was already used'))

function afterReplayCheck(first: boolean | Denial, result: BindingResult): BindingResult | Denial {
  if (first === true) return result
  return first === false ? REPLAYED : first
}

function unboundMessage(method: BindingMethod): string {
  if (method === 'dpop') return 'this route requires a DPoP-bound token'
  if (method === 'mtls') return 'this route requires a certificate-bound token'
  return 'this route requires a sender-constrained (DPoP or certificate-bound) token'
}

/** The path of a request target, without its query (a fragment never reaches a server). */
function pathOf(target: string | undefined): string {
  // decide() refuses a target that is not a path before any token is looked at.
  if (!target?.startsWith('/')) return '/'
  const q = target.indexOf('?')
  return q < 0 ? target : target.slice(0, q)
}

/** A route's binding: its own `binding` for every issuer, else each issuer's; null when no token of the route is checked. */
export function routeBinding(own: BindingRule | undefined, issuers: readonly Issuer[]): RouteBinding | null {
  const rules = new Map<Issuer, BindingRule>()
  let dpop = false
  let bearer = false
  for (const issuer of issuers) {
    const rule = own ?? issuer.binding
    if (!rule || rule.method === 'none') {
      bearer = true
      continue
    }
    rules.set(issuer, rule)
    if (rule.method === 'dpop' || rule.method === 'any') dpop = true
    if (rule.method !== 'dpop' || !rule.required) bearer = true
  }
  return rules.size ? { rules, dpop, bearer } : null
}
