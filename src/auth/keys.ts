// A key ready to verify with: one prepared fast-jwt verifier per key, made when the key is
// loaded, so verifying a token never parses a PEM (fast-jwt's async key path re-parses it on
// every call, about 165 µs for RSA).
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import { createVerifier } from 'fast-jwt'

export interface VerifyOptions {
  issuer: string
  /** The iss values the verifier accepts, when not just `issuer`: aliases, or a multi-tenant template's shape. */
  allowedIss?: string | RegExp | readonly string[]
  clockSkewMs: number
  requireExp: boolean
}

export interface PreparedKey {
  readonly kid: string | undefined
  /** The algorithms this key may verify: the issuer's allow-list narrowed to the key's type (and its `alg`). */
  readonly algorithms: ReadonlySet<string>
  /** Verifies signature, alg, iss, exp, nbf and crit; throws fast-jwt's TokenError. */
  readonly verify: (token: string) => Record<string, unknown>
}

const RSA = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const EC_BY_CURVE: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }
const MIN_RSA_BITS = 2048

/** A key from a key set that is skipped, and why (for the debug log): a fetched key set is data, not policy. */
export interface UnusableKey {
  readonly unusable: string
}

function unusable(why: string): UnusableKey {
  return { unusable: why }
}

/** The prepared key, or why a JWK from a key set cannot be used. */
export function prepareJwk(
  jwk: JsonWebKey & { kid?: unknown; use?: unknown; alg?: unknown },
  allowed: ReadonlySet<string>,
  options: VerifyOptions,
): PreparedKey | UnusableKey {
  // Keys meant for encryption never verify signatures (RFC 7517 §4.2, §4.3).
  if (jwk.use !== undefined && jwk.use !== 'sig') return unusable(`use is "${String(jwk.use)}"`)
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return unusable('key_ops does not include "verify"')
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') return unusable('kid is not a string')
  const typeAlgorithms = algorithmsForKeyType(jwk)
  if (!Array.isArray(typeAlgorithms)) return typeAlgorithms
  // A JWK without `alg` may serve any algorithm of its type; with one, only that.
  const declared = typeof jwk.alg === 'string' ? [jwk.alg] : typeAlgorithms
  const algorithms = declared.filter((a) => typeAlgorithms.includes(a) && allowed.has(a))
  if (algorithms.length === 0) return unusable(`no allowed algorithm fits this ${jwk.kty} key`)
  let key: KeyObject
  try {
    key = createPublicKey({ key: jwk, format: 'jwk' })
  } catch (err) {
    return unusable(`not a valid public key (${(err as Error).message})`)
  }
  if (key.type !== 'public') return unusable('not a public key')
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
    return unusable(`RSA key shorter than ${MIN_RSA_BITS} bits`)
  }
  const pem = key.export({ type: 'spki', format: 'pem' }).toString()
  return prepareKey(jwk.kid as string | undefined, pem, algorithms, options)
}

/** A verifier over a PEM public key or an HMAC secret, restricted to `algorithms`. */
export function prepareKey(kid: string | undefined, keyOrSecret: string | Buffer, algorithms: string[], options: VerifyOptions): PreparedKey {
  const verify = createVerifier({
    key: keyOrSecret,
    algorithms: algorithms as never,
    // The issuer was chosen by this exact iss already; checking it again costs little and keeps
    // the verifier safe on its own. fast-jwt skips allowedIss when iss is absent, hence requiredClaims.
    allowedIss: (options.allowedIss ?? options.issuer) as string,
    requiredClaims: options.requireExp ? ['iss', 'exp'] : ['iss'],
    clockTolerance: options.clockSkewMs,
    // fast-jwt's token cache is keyed by the token alone and would keep accepting tokens of a
    // key after the key set dropped it.
    cache: false,
  }) as (token: string) => Record<string, unknown>
  return { kid, algorithms: new Set(algorithms), verify }
}

function algorithmsForKeyType(jwk: JsonWebKey): string[] | UnusableKey {
  switch (jwk.kty) {
    case 'RSA':
      return RSA
    case 'EC': {
      const alg = EC_BY_CURVE[String(jwk.crv)]
      return alg ? [alg] : unusable(`unsupported curve ${String(jwk.crv)}`)
    }
    case 'OKP':
      return jwk.crv === 'Ed25519' || jwk.crv === 'Ed448' ? ['EdDSA'] : unusable(`unsupported curve ${String(jwk.crv)}`)
    default:
      // Symmetric (`oct`) keys are never taken from a fetched key set: a published HMAC key
      // would let anyone sign.
      return unusable(`key type ${String(jwk.kty)} is not accepted from a key set`)
  }
}
