// Where a route reads its tokens: headers (with a prefix such as `Bearer `), cookies and query
// parameters, each with the issuers that accept tokens from there (Envoy's from_headers,
// from_cookies and from_params). Compiled once per route; src/auth/extract.ts reads them.
import { cannotCarryToken } from '../http/owned_headers.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import { IssuerSchema, type TokenSourceDocument } from '../policy/schema.js'
import type { IssuerSet } from './issuer_set.js'

export interface TokenSource {
  readonly kind: 'header' | 'cookie' | 'query'
  /** Header names in lower case; cookie and parameter names as written (they are case-sensitive). */
  readonly name: string
  /** Headers only: the text before the token, ASCII letters in lower case; '' for none. */
  readonly prefix: string
  /** For messages: `Authorization header`, `session cookie`, `access_token query parameter`. */
  readonly what: string
  /** Headers with a prefix: the message when the header is there without it. */
  readonly unprefixed: string
  /** The route's issuers that accept tokens found here. */
  readonly issuers: IssuerSet
  /** Authorization on a route that takes DPoP-bound tokens: the DPoP scheme is read too. */
  readonly dpop?: boolean
}

/** A route's token sources, by kind, so the extractor only looks where something is configured. */
export interface TokenSources {
  readonly all: readonly TokenSource[]
  readonly headers: readonly TokenSource[]
  readonly cookies: readonly TokenSource[]
  readonly queries: readonly TokenSource[]
  /** The route reads DPoP proofs (the DPoP header) for DPoP-bound tokens. */
  readonly dpop: boolean
  /** The parameter names to remove from the URL before forwarding. */
  readonly queryNames: readonly string[]
  readonly cookieNames: readonly string[]
}

/** RFC 6750 §2.1: what an issuer reads when it names no sources. */
export const DEFAULT_TOKEN_SOURCES: readonly TokenSourceDocument[] = defaultsOf(IssuerSchema, ['token_sources']).token_sources

/** A source without the issuers yet: what one `token_sources` item says, checked. */
export interface SourcePlace {
  kind: TokenSource['kind']
  name: string
  prefix: string
  what: string
  unprefixed: string
  /** The place read: one header is one place, whatever its prefix. */
  key: string
}

/** Checks one `token_sources` item (at `at`); undefined after saying why it cannot be used. */
export function sourcePlace(spec: TokenSourceDocument, at: DocPath, problem: OnProblem): SourcePlace | undefined {
  const fail = (message: string): undefined => {
    problem(at, message)
    return undefined
  }
  const kinds = (['header', 'cookie', 'query'] as const).filter((k) => spec[k] !== undefined)
  if (kinds.length !== 1) return fail(`a token source names exactly one of header, cookie or query${kinds.length ? ` (found ${kinds.join(', ')})` : ''}`)
  if (spec.prefix !== undefined && spec.header === undefined) return fail('prefix goes with header')
  if (spec.header !== undefined) {
    const name = spec.header.toLowerCase()
    if (cannotCarryToken(name))
      return fail(`${spec.header} cannot carry a token: the gateway or the protocol owns it${name === 'cookie' ? ' (use { cookie: <name> })' : ''}`)
    // Authorization takes the Bearer scheme unless told otherwise; other headers carry the bare token.
    const prefix = spec.prefix ?? (name === 'authorization' ? 'Bearer ' : '')
    const scheme = prefix.trim()
    return {
      kind: 'header',
      name,
      prefix: prefix.replace(/[A-Z]/g, (c) => c.toLowerCase()),
      what: `${spec.header} header`,
      key: `header:${name}`,
      unprefixed: `the ${spec.header} header does not carry a ${scheme ? `${scheme} ` : ''}token`,
    }
  }
  if (spec.cookie !== undefined)
    return { kind: 'cookie', name: spec.cookie, prefix: '', what: `${spec.cookie} cookie`, key: `cookie:${spec.cookie}`, unprefixed: '' }
  return { kind: 'query', name: spec.query!, prefix: '', what: `${spec.query!} query parameter`, key: `query:${spec.query!}`, unprefixed: '' }
}

export function tokenSources(all: TokenSource[]): TokenSources {
  const queries = all.filter((s) => s.kind === 'query')
  const cookies = all.filter((s) => s.kind === 'cookie')
  return {
    all,
    dpop: all.some((s) => s.dpop === true),
    headers: all.filter((s) => s.kind === 'header'),
    cookies,
    queries,
    queryNames: queries.map((s) => s.name),
    cookieNames: cookies.map((s) => s.name),
  }
}
