// DPoP proofs (RFC 9449): the `DPoP` header of a request that presents a DPoP-bound access token
// (`Authorization: DPoP <token>`). A proof is a JWS the client signs with the key its token is
// bound to (the token's `cnf.jkt` is that key's RFC 7638 thumbprint), over this request's method
// and URL, a fresh time, a unique id and the hash of the token: a stolen token is useless without
// the key, and a captured proof is useless for another request. The checks are §4.3's, in order.
// Verified with node:crypto rather than a JOSE library: the key is in the proof itself, and its
// KeyObject is kept by thumbprint, so a client's next proof costs one signature check.
import { constants, createHash, createPublicKey, verify, type KeyObject } from 'node:crypto'
import { deny, type Denial } from '../http/denial.js'
import type { DpopNonces } from './dpop_nonce.js'
import { canonicalParts } from './jws_encoding.js'
import { mediaType } from './requirement.js'

export interface DpopSettings {
  /** The algorithms a proof may use (asymmetric only), and the same space separated for the challenge's `algs`. */
  readonly algorithms: ReadonlySet<string>
  readonly algs: string
  /** A proof's iat may be this far from now, either way (`dpop.proof_max_age`). */
  readonly maxAgeMs: number
  /** A larger DPoP header is refused before it is parsed. */
  readonly maxProofBytes: number
  /** Server nonces (§8, §9), when the policy asks for them. */
  readonly nonces: DpopNonces | null
  /** Whether the nonces' secret is the policy's (else the process made one). */
  readonly nonceSecretGiven?: boolean
  /** Public keys of recent proofs by thumbprint: a KeyObject is made once per client key. */
  readonly keys: ProofKeys
}

/** What a proof is checked against: this request, and the token it comes with. */
export interface ProofRequest {
  method: string
  /** The request's URL as the client addressed it, without query: scheme://authority/path. */
  url: string
  accessToken: string
}

/** A proof that passed every check; the caller compares `jkt` with the token's and records `jti`. */
export interface VerifiedProof {
  /** RFC 7638 thumbprint (SHA-256, base64url) of the proof's key. */
  jkt: string
  jti: string
  /** Seconds, as in the proof. */
  iat: number
  /** Set when the proof used a nonce that is not the current one: the next answer may hand the new one. */
  nextNonce?: string
}

const PART = /^[A-Za-z0-9_-]+$/
// RFC 7517 §9.3, RFC 7518 §6: the members that make a JWK private (or symmetric).
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const
const EC_ALG_BY_CURVE: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }
const MIN_RSA_BITS = 2048
/** Client keys remembered; past it the oldest is forgotten (and made again if it comes back). */
const MAX_KEYS = 10_000

function invalid(description: string): Denial {
  return deny('invalid_dpop_proof', description)
}

/**
 * Checks one proof (the value of the request's single DPoP header) against the request and the
 * access token. Never throws: a bad proof is a denial `invalid_dpop_proof`, a missing or old
 * nonce `use_dpop_nonce` carrying the nonce to use.
 */
export function verifyProof(proof: string, request: ProofRequest, settings: DpopSettings, now: number): VerifiedProof | Denial {
  if (proof.length > settings.maxProofBytes) return invalid(`the DPoP proof is larger than ${settings.maxProofBytes} bytes`)
  const first = proof.indexOf('.')
  const last = proof.lastIndexOf('.')
  if (first <= 0 || last <= first + 1 || last === proof.length - 1) return invalid('the DPoP proof is not a JWS compact token')
  const headerPart = proof.slice(0, first)
  const payloadPart = proof.slice(first + 1, last)
  const signaturePart = proof.slice(last + 1)
  // Buffer's base64url decoder skips characters outside the alphabet: checked here instead.
  if (!PART.test(headerPart) || !PART.test(payloadPart) || !PART.test(signaturePart) || !canonicalParts(proof)) {
    return invalid('the DPoP proof is not a JWS compact token')
  }
  const header = jsonObject(headerPart)
  const payload = jsonObject(payloadPart)
  if (!header || !payload) return invalid('the DPoP proof header or payload is not a JSON object')

  // §4.3 4-7: the type, an allowed asymmetric alg, a public key that fits it, the signature.
  if (typeof header.typ !== 'string' || mediaType(header.typ) !== 'dpop+jwt') return invalid('the DPoP proof typ is not dpop+jwt')
  const alg = header.alg
  if (typeof alg !== 'string' || !settings.algorithms.has(alg)) return invalid('the DPoP proof alg is not allowed')
  // No extension is understood here, so none may be critical (RFC 7515 §4.1.11).
  if (Object.hasOwn(header, 'crit')) return invalid('the DPoP proof has a critical header this gateway does not understand')
  const jwk = header.jwk
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return invalid('the DPoP proof header has no jwk')
  const members = jwk as Record<string, unknown>
  for (const name of PRIVATE_MEMBERS) {
    if (Object.hasOwn(members, name)) return invalid('the DPoP proof jwk carries private key material')
  }
  const thumbprintInput = requiredMembers(members)
  if (!thumbprintInput) return invalid('the DPoP proof jwk is not an EC, RSA or OKP public key')
  const jkt = createHash('sha256').update(thumbprintInput).digest('base64url')
  const key = settings.keys.get(jkt, thumbprintInput)
  if (!key) return invalid('the DPoP proof jwk is not a usable public key')
  const unfit = keyUnfitFor(alg, members, key)
  if (unfit) return invalid(unfit)
  if (!signatureHolds(alg, key, proof.slice(0, last), Buffer.from(signaturePart, 'base64url'))) return invalid('the DPoP proof signature is invalid')

  // §4.3 8-12: this request, this time, this token.
  const { jti, htm, htu, iat, ath } = payload
  if (typeof jti !== 'string' || jti.length === 0) return invalid('the DPoP proof has no jti')
  if (htm !== request.method) return invalid('the DPoP proof htm is not the request method')
  if (typeof htu !== 'string' || !sameResource(htu, request.url)) return invalid('the DPoP proof htu is not the request URL')
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return invalid('the DPoP proof has no iat')
  if (Math.abs(now - iat * 1000) > settings.maxAgeMs) return invalid(iat * 1000 > now ? 'the DPoP proof iat is in the future' : 'the DPoP proof is too old')
  if (typeof ath !== 'string') return invalid('the DPoP proof has no ath')
  if (ath !== createHash('sha256').update(request.accessToken).digest('base64url')) return invalid('the DPoP proof ath is not the hash of the access token')

  let nextNonce: string | undefined
  if (settings.nonces) {
    const nonce = payload.nonce
    const current = settings.nonces.current(now)
    if (typeof nonce !== 'string' || !settings.nonces.accepts(nonce, now)) {
      const denial = deny('use_dpop_nonce', typeof nonce === 'string' ? 'the DPoP proof nonce is not valid any more' : 'the DPoP proof needs a nonce')
      denial.nonce = current
      return denial
    }
    if (nonce !== current) nextNonce = current
  }
  return nextNonce ? { jkt, jti, iat, nextNonce } : { jkt, jti, iat }
}

/** The SHA-256 hash of an access token as a proof's `ath` carries it. */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

function jsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/**
 * RFC 7638 §3.2: the JSON of the key's required members, in lexicographic order, without
 * whitespace; the thumbprint is its SHA-256. Undefined for a key type that cannot sign a proof.
 */
export function requiredMembers(jwk: Record<string, unknown>): string | undefined {
  const strings = (...names: string[]) => names.every((n) => typeof jwk[n] === 'string' && (jwk[n] as string).length > 0)
  switch (jwk.kty) {
    case 'EC':
      return strings('crv', 'x', 'y') ? JSON.stringify({ crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y }) : undefined
    case 'RSA':
      return strings('e', 'n') ? JSON.stringify({ e: jwk.e, kty: 'RSA', n: jwk.n }) : undefined
    case 'OKP':
      return strings('crv', 'x') ? JSON.stringify({ crv: jwk.crv, kty: 'OKP', x: jwk.x }) : undefined
    default:
      return undefined
  }
}

/** Why this key cannot verify `alg` (RFC 7518 §3.1, RFC 8037), or undefined when it can. */
function keyUnfitFor(alg: string, jwk: Record<string, unknown>, key: KeyObject): string | undefined {
  if (jwk.alg !== undefined && jwk.alg !== alg) return 'the DPoP proof jwk is declared for another alg'
  if (alg.startsWith('ES')) return EC_ALG_BY_CURVE[String(jwk.crv)] === alg ? undefined : `the DPoP proof jwk does not fit ${alg}`
  if (alg.startsWith('RS') || alg.startsWith('PS')) {
    if (jwk.kty !== 'RSA') return `the DPoP proof jwk does not fit ${alg}`
    return (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS ? `the DPoP proof RSA key is shorter than ${MIN_RSA_BITS} bits` : undefined
  }
  if (alg === 'Ed25519') return jwk.crv === 'Ed25519' ? undefined : 'the DPoP proof jwk does not fit Ed25519'
  // EdDSA (RFC 8037): Ed25519 or Ed448.
  return jwk.kty === 'OKP' && (jwk.crv === 'Ed25519' || jwk.crv === 'Ed448') ? undefined : `the DPoP proof jwk does not fit ${alg}`
}

function signatureHolds(alg: string, key: KeyObject, input: string, signature: Buffer): boolean {
  const data = Buffer.from(input)
  try {
    if (alg === 'EdDSA' || alg === 'Ed25519') return verify(null, data, key, signature)
    const digest = `sha${alg.slice(2)}`
    if (alg.startsWith('ES')) return verify(digest, data, { key, dsaEncoding: 'ieee-p1363' }, signature)
    if (alg.startsWith('PS')) return verify(digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 }, signature)
    return verify(digest, data, key, signature)
  } catch {
    return false
  }
}

/** Public keys by thumbprint, bounded; the oldest goes first. */
export class ProofKeys {
  private readonly keys = new Map<string, KeyObject>()

  constructor(private readonly max = MAX_KEYS) {}

  /** The key whose required members are `members` (its thumbprint `jkt`); undefined when they make no public key. */
  get(jkt: string, members: string): KeyObject | undefined {
    const known = this.keys.get(jkt)
    if (known) return known
    let key: KeyObject
    try {
      key = createPublicKey({ key: JSON.parse(members) as never, format: 'jwk' })
    } catch {
      return undefined
    }
    if (key.type !== 'public') return undefined
    if (this.keys.size >= this.max) this.keys.delete(this.keys.keys().next().value!)
    this.keys.set(jkt, key)
    return key
  }

  get size(): number {
    return this.keys.size
  }
}

/**
 * Whether a proof's htu names the resource at `requestUrl` (scheme://authority/path, no query):
 * §4.3 9, compared without query and fragment, after RFC 3986 §6.2.2 and §6.2.3 normalization
 * (scheme and host case, default port, dot segments, percent-encoding case and unreserved
 * characters) of both sides. The usual case, the same text, costs no parsing.
 */
export function sameResource(htu: string, requestUrl: string): boolean {
  const end = resourceEnd(htu)
  if (end === requestUrl.length && htu.startsWith(requestUrl)) return true
  const claimed = normalizedUrl(htu.slice(0, end))
  return claimed !== undefined && claimed === normalizedUrl(requestUrl)
}

function resourceEnd(url: string): number {
  const q = url.indexOf('?')
  const h = url.indexOf('#')
  if (q < 0) return h < 0 ? url.length : h
  return h < 0 ? q : Math.min(q, h)
}

function normalizedUrl(text: string): string | undefined {
  const url = URL.parse(text)
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password) return undefined
  // WHATWG parsing already lower-cased scheme and host, dropped the default port and resolved
  // dot segments; left to do: percent-encodings (§6.2.2.1, §6.2.2.2).
  return `${url.protocol}//${url.host}${normalizedPercents(url.pathname)}`
}

const UNRESERVED = /[A-Za-z0-9\-._~]/

function normalizedPercents(path: string): string {
  if (!path.includes('%')) return path
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const c = String.fromCharCode(Number.parseInt(hex, 16))
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`
  })
}
