// A configured issuer: the only keys and algorithms a token claiming its `iss` may be checked
// against. Keys are bound to their issuer, so a key of one IdP can never verify another's token.
import { TokenError } from 'fast-jwt'
import type { Logger } from 'pino'
import { deny, type Denial } from '../http/denial.js'
import type { IssuerTemplate } from './issuer_template.js'
import { JwksCache, type JwksSettings, type KeyLookupResult } from './jwks_cache.js'
import { prepareKey, type PreparedKey, type VerifyOptions } from './keys.js'
import type { TokenSourceDocument } from '../policy/schema.js'
import type { BindingRule } from './binding_rule.js'

export interface IssuerSettings extends VerifyOptions {
  name: string
  /** The exact iss values of its tokens: `issuer` and its aliases; none for a template. */
  exactIss?: readonly string[]
  /** A multi-tenant issuer (`{tid}` in `issuer`). */
  template?: IssuerTemplate
  audiences: readonly string[]
  /** The claim compared with audiences; `aud` by default. */
  audienceClaim?: string
  algorithms: readonly string[]
  /** Where its tokens are read; `Authorization: Bearer` by default. */
  tokenSources: readonly TokenSourceDocument[]
  /** `binding:`, what its tokens' cnf is checked with on routes that do not say. */
  binding?: BindingRule | undefined
}

export type KeyLookup = PreparedKey | Denial

export interface Issuer {
  readonly name: string
  /** As written in the policy; a template contains `{tid}`. */
  readonly issuer: string
  readonly exactIss: readonly string[]
  readonly template: IssuerTemplate | undefined
  readonly audiences: ReadonlySet<string>
  readonly audienceClaim: string
  /** Where its tokens are read, unless a route says otherwise. */
  readonly tokenSources: readonly TokenSourceDocument[]
  readonly algorithms: ReadonlySet<string>
  readonly clockSkewMs: number
  /** `binding:`; undefined when its tokens' cnf is not looked at (unless a route says). */
  readonly binding: BindingRule | undefined
  /** The key for this token header; a promise only when the key set must be fetched first. */
  keyFor(kid: string | undefined, alg: string): KeyLookup | Promise<KeyLookup>
  start(): Promise<void>
  stop(): void
  /** Whether the key is still one of the issuer's; false once a refresh dropped it. */
  holdsKey(key: PreparedKey): boolean
  /** True when keys are at hand (always, for a shared secret). */
  readonly ready: boolean
  readonly jwks?: JwksCache
}

function base(settings: IssuerSettings) {
  return {
    name: settings.name,
    issuer: settings.issuer,
    exactIss: settings.exactIss ?? (settings.template ? [] : [settings.issuer]),
    template: settings.template,
    audiences: new Set(settings.audiences),
    audienceClaim: settings.audienceClaim ?? 'aud',
    tokenSources: settings.tokenSources,
    algorithms: new Set(settings.algorithms),
    clockSkewMs: settings.clockSkewMs,
    binding: settings.binding,
  }
}

/** A shared HMAC secret, with the kid of the tokens it signs if they carry one. */
export interface IssuerSecret {
  kid: string | undefined
  secret: Buffer
}

/**
 * An issuer whose tokens are HMAC-signed with shared secrets, the newest first (more than one
 * while they are rotated). A token whose kid is the kid of a secret is checked with that secret
 * only; any other token with each secret without a kid (a token without kid: with every secret),
 * in order, the first whose signature matches deciding.
 */
export function secretIssuer(settings: IssuerSettings, secrets: Buffer | readonly IssuerSecret[]): Issuer {
  const list = Buffer.isBuffer(secrets) ? [{ kid: undefined, secret: secrets }] : secrets
  const keys = list.map(({ kid, secret }) => prepareKey(kid, secret, [...settings.algorithms], settings))
  const byKid = new Map(keys.flatMap((k) => (k.kid === undefined ? [] : [[k.kid, k] as const])))
  const all = firstThatVerifies(keys)
  const withoutKid = keys.some((k) => k.kid === undefined) ? firstThatVerifies(keys.filter((k) => k.kid === undefined)) : undefined
  const held = new Set([all, withoutKid, ...keys])
  return {
    ...base(settings),
    keyFor: (kid) => {
      if (kid === undefined) return all
      return byKid.get(kid) ?? withoutKid ?? deny('unknown_kid', 'no secret of the issuer matches the token kid')
    },
    holdsKey: (k) => held.has(k),
    start: () => Promise.resolve(),
    stop: () => {},
    ready: true,
  }
}

/** One key over several secrets: each tried in order until a signature matches (at most MAX_ISSUER_SECRETS). */
function firstThatVerifies(keys: readonly PreparedKey[]): PreparedKey {
  if (keys.length === 1) return keys[0]!
  return {
    kid: undefined,
    algorithms: keys[0]!.algorithms,
    verify(token) {
      let error: unknown
      for (const key of keys) {
        try {
          return key.verify(token)
        } catch (err) {
          // Only a signature that does not match means another secret may; anything else (an
          // expired token whose signature matched) is the answer.
          if (!(err instanceof TokenError && err.code === TokenError.codes.invalidSignature)) throw err
          error = err
        }
      }
      throw error
    },
  }
}

/** An issuer whose public keys come from a JWKS document. */
export function jwksIssuer(settings: IssuerSettings, jwks: JwksSettings, log: Logger): Issuer {
  const cache = new JwksCache(jwks, new Set(settings.algorithms), settings, log.child({ issuer: settings.name }))
  return {
    ...base(settings),
    jwks: cache,
    get ready() {
      return cache.hasKeys
    },
    start: () => cache.start(),
    stop: () => cache.stop(),
    holdsKey: (key) => cache.holds(key),
    keyFor(kid, alg) {
      const found = cache.lookup(kid, alg)
      return found instanceof Promise ? found.then((f) => answer(f, kid, cache)) : answer(found, kid, cache)
    },
  }
}

function answer(found: KeyLookupResult, kid: string | undefined, cache: JwksCache): KeyLookup {
  if (!('absent' in found || 'retryInMs' in found)) return found
  if ('retryInMs' in found) {
    // Not the token's fault: the IdP is down, or may have published the key since the last fetch.
    const denial = deny(
      'keys_unavailable',
      cache.hasKeys ? "the token's key is not known yet; try again later" : "the issuer's signing keys are unavailable; try again later",
    )
    return { ...denial, retryAfterS: Math.max(1, Math.ceil(found.retryInMs / 1000)) }
  }
  if (kid === undefined) return deny('unknown_kid', 'the token has no kid and no single key of the issuer fits its alg')
  return deny('unknown_kid', 'no key of the issuer matches the token kid')
}
