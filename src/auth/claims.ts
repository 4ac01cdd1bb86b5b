// Claim paths and the claim conditions a route can require.
import { deny, type Denial } from './deny.js'

export type ClaimPath = readonly string[]

/**
 * `realm_access.roles` → ['realm_access', 'roles']. A name that itself contains dots or slashes
 * (Auth0's `https://example.com/roles`) is written in double quotes: `"https://example.com/roles"`.
 */
export function parseClaimPath(text: string): ClaimPath {
  const out: string[] = []
  let i = 0
  while (i < text.length) {
    if (text[i] === '"') {
      const end = text.indexOf('"', i + 1)
      if (end < 0) throw new Error(`unclosed quote in claim path ${text}`)
      out.push(text.slice(i + 1, end))
      i = end + 1
      if (i < text.length && text[i] !== '.') throw new Error(`expected "." after a quoted name in claim path ${text}`)
      i++
    } else {
      let end = text.indexOf('.', i)
      if (end < 0) end = text.length
      const name = text.slice(i, end)
      if (!name) throw new Error(`empty name in claim path ${text}`)
      out.push(name)
      i = end + 1
    }
  }
  if (out.length === 0 || out.some((s) => s.length === 0)) throw new Error(`empty claim path ${text}`)
  return out
}

export function claimAt(claims: Record<string, unknown>, path: ClaimPath): unknown {
  let value: unknown = claims
  for (const name of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
    // Own properties only: a claim named __proto__ or constructor must not reach Object.prototype.
    if (!Object.prototype.hasOwnProperty.call(value, name)) return undefined
    value = (value as Record<string, unknown>)[name]
  }
  return value
}

type Scalar = string | number | boolean

export interface ClaimCondition {
  path: ClaimPath
  label: string
  test(value: unknown): boolean
}

export function compileCondition(label: string, spec: { equals?: Scalar; one_of?: Scalar[]; contains?: Scalar }): ClaimCondition {
  const path = parseClaimPath(label)
  const tests: Array<(v: unknown) => boolean> = []
  if (spec.equals !== undefined) {
    const expected = spec.equals
    tests.push((v) => v === expected)
  }
  if (spec.one_of !== undefined) {
    const allowed = new Set<unknown>(spec.one_of)
    tests.push((v) => (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && allowed.has(v))
  }
  if (spec.contains !== undefined) {
    const wanted = spec.contains
    tests.push((v) => Array.isArray(v) && v.includes(wanted))
  }
  return { path, label, test: (v) => tests.every((t) => t(v)) }
}

/** What a route requires of a verified token beyond its validity. */
export interface Requirement {
  conditions: readonly ClaimCondition[]
  scopes: readonly string[]
  /** The scopes as named in a 403's WWW-Authenticate (RFC 6750 §3). */
  scopeText: string | undefined
}

export function compileRequirement(claims: Record<string, { equals?: Scalar; one_of?: Scalar[]; contains?: Scalar }> | undefined, scopes: string[] | undefined): Requirement {
  const conditions = Object.entries(claims ?? {}).map(([label, spec]) => compileCondition(label, spec))
  return { conditions, scopes: scopes ?? [], scopeText: scopes?.length ? scopes.join(' ') : undefined }
}

/** undefined when the token meets the requirement; a 403 denial naming what it lacks otherwise. */
export function authorize(claims: Record<string, unknown>, requirement: Requirement): Denial | undefined {
  for (const condition of requirement.conditions) {
    if (!condition.test(claimAt(claims, condition.path))) {
      return insufficient(`the token lacks the required claim ${condition.label}`, requirement)
    }
  }
  if (requirement.scopes.length) {
    const granted = grantedScopes(claims)
    for (const scope of requirement.scopes) {
      if (!granted.includes(scope)) return insufficient('the token lacks a required scope', requirement)
    }
  }
  return undefined
}

function insufficient(description: string, requirement: Requirement): Denial {
  const denial = deny('insufficient_claims', description)
  if (requirement.scopeText) denial.scope = requirement.scopeText
  return denial
}

/** Scopes from `scope` (space separated, RFC 8693 §4.2) or `scp` (an array, or a string as Entra writes it). */
export function grantedScopes(claims: Record<string, unknown>): string[] {
  const out: string[] = []
  for (const value of [claims.scope, claims.scp]) {
    if (typeof value === 'string') out.push(...value.split(' ').filter(Boolean))
    else if (Array.isArray(value)) for (const s of value) if (typeof s === 'string') out.push(s)
  }
  return out
}

/**
 * Registered claims fast-jwt leaves to us: the audience (`aud`, or the issuer's `audience_claim`)
 * must be present and name one of the accepted audiences; `iat`, when present, a number not in
 * the future beyond the skew; `sub`, when present, a string (it becomes an identity header).
 */
export function checkRegisteredClaims(claims: Record<string, unknown>, audiences: ReadonlySet<string>, clockSkewMs: number, now: number, audienceClaim = 'aud'): Denial | undefined {
  // Own properties only: an audience_claim such as `constructor` must not read Object.prototype.
  const aud = Object.hasOwn(claims, audienceClaim) ? claims[audienceClaim] : undefined
  if (typeof aud === 'string') {
    if (!audiences.has(aud)) return deny('wrong_audience', 'the token is not meant for this audience')
  } else if (Array.isArray(aud)) {
    let match = false
    for (const a of aud) {
      if (typeof a !== 'string') return deny('invalid_claims', `the ${audienceClaim} claim must be a string or an array of strings`)
      if (audiences.has(a)) match = true
    }
    if (!match) return deny('wrong_audience', 'the token is not meant for this audience')
  } else if (aud === undefined) {
    return deny('wrong_audience', `the token has no ${audienceClaim} claim`)
  } else {
    return deny('invalid_claims', `the ${audienceClaim} claim must be a string or an array of strings`)
  }
  const iat = claims.iat
  if (iat !== undefined) {
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return deny('invalid_claims', 'the iat claim must be a number')
    if (iat * 1000 > now + clockSkewMs) return deny('issued_in_future', 'the token is issued in the future')
  }
  if (claims.sub !== undefined && typeof claims.sub !== 'string') return deny('invalid_claims', 'the sub claim must be a string')
  return undefined
}
