// Claim paths, the conditions a requirement can put on a claim, and the registered claims
// checked on every route.
import { createRequire } from 'node:module'
import type { RE2JS } from 're2js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import type { ClaimConditionDocument } from '../policy/schema.js'
import { deny, failedCheck, oneOf, type Denial } from '../http/denial.js'

export type ClaimPath = readonly string[]

/**
 * `realm_access.roles` → ['realm_access', 'roles']. A name that itself contains dots or slashes
 * (Auth0's `https://example.com/roles`) is written in double quotes: `"https://example.com/roles"`.
 */
export function parseClaimPath(text: string, at: DocPath, problem: OnProblem): ClaimPath | undefined {
  const fail = (message: string): undefined => {
    problem(at, message)
    return undefined
  }
  const out: string[] = []
  let i = 0
  while (i < text.length) {
    if (text[i] === '"') {
      const end = text.indexOf('"', i + 1)
      if (end < 0) return fail(`unclosed quote in claim path ${text}`)
      out.push(text.slice(i + 1, end))
      i = end + 1
      if (i < text.length && text[i] !== '.') return fail(`expected "." after a quoted name in claim path ${text}`)
      i++
    } else {
      let end = text.indexOf('.', i)
      if (end < 0) end = text.length
      const name = text.slice(i, end)
      if (!name) return fail(`empty name in claim path ${text}`)
      out.push(name)
      i = end + 1
    }
  }
  if (out.length === 0 || out.some((s) => s.length === 0)) return fail(`empty claim path ${text}`)
  return out
}

export function claimAt(claims: Record<string, unknown>, path: ClaimPath): unknown {
  let value: unknown = claims
  for (const name of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
    // Own properties only: a claim named __proto__ or constructor must not reach Object.prototype.
    if (!Object.hasOwn(value, name)) return undefined
    value = (value as Record<string, unknown>)[name]
  }
  return value
}

type Scalar = string | number | boolean

export interface ClaimCondition {
  path: ClaimPath
  label: string
  /** As written: what it wants in words is conditionWords(spec), made only for a refusal. */
  spec: ClaimConditionDocument
  test(value: unknown): boolean
  /**
   * For a condition with `matches`: its results by the token's claims object. A cached token
   * keeps its claims object, so the pattern runs once per token and route, not on every request;
   * an entry goes with the claims when the token leaves the cache.
   */
  memo?: WeakMap<object, boolean>
}

/** Whether the token's claims meet the condition; `matches` results remembered per claims object (memo). */
export function conditionHolds(condition: ClaimCondition, claims: Record<string, unknown>): boolean {
  const memo = condition.memo
  if (memo === undefined) return condition.test(claimAt(claims, condition.path))
  let held = memo.get(claims)
  if (held === undefined) memo.set(claims, (held = condition.test(claimAt(claims, condition.path))))
  return held
}

/**
 * A condition on one claim (`claims: { <label>: spec }`, at `at`); undefined after saying why
 * it cannot work: a bad claim path (at the label), a bad or unsafe regular expression (at
 * matches), exists: false with other tests (at exists).
 */
export function compileCondition(label: string, spec: ClaimConditionDocument, at: DocPath, problem: OnProblem): ClaimCondition | undefined {
  const path = parseClaimPath(label, at, problem)
  if (!path) return undefined
  const tests: Array<(v: unknown) => boolean> = []
  if (spec.exists === false) {
    if (Object.keys(spec).length > 1) {
      problem([...at, 'exists'], 'exists: false cannot be combined with other conditions: an absent claim fails them all')
      return undefined
    }
    return { path, label, spec, test: (v) => v === undefined || v === null }
  }
  if (spec.exists === true) tests.push((v) => v !== undefined && v !== null)
  if (spec.equals !== undefined) {
    const expected = spec.equals
    tests.push((v) => v === expected)
  }
  if (spec.one_of !== undefined) {
    const allowed = new Set<unknown>(spec.one_of)
    tests.push((v) => isScalar(v) && allowed.has(v))
  }
  if (spec.contains !== undefined) {
    const wanted = spec.contains
    tests.push((v) => Array.isArray(v) && v.includes(wanted))
  }
  if (spec.contains_any !== undefined) {
    const wanted = spec.contains_any
    tests.push((v) => Array.isArray(v) && wanted.some((w) => v.includes(w)))
  }
  if (spec.contains_all !== undefined) {
    const wanted = spec.contains_all
    tests.push((v) => Array.isArray(v) && wanted.every((w) => v.includes(w)))
  }
  if (spec.matches !== undefined) {
    const pattern = compileClaimPattern(spec.matches, [...at, 'matches'], problem)
    if (!pattern) return undefined
    // Linear in the claim's length whatever the pattern (RE2); the cap bounds that too.
    tests.push((v) => typeof v === 'string' && v.length <= MAX_MATCHED_LENGTH && pattern.test(v))
  }
  const memo = spec.matches === undefined ? {} : { memo: new WeakMap<object, boolean>() }
  if (tests.length === 1) return { path, label, spec, test: tests[0]!, ...memo }
  return { path, label, spec, test: (v) => tests.every((t) => t(v)), ...memo }
}

/**
 * A condition in words, as the 403 says what was wanted and `explain` shows the requirement:
 * `must be present and contain "admin"`, `must match ".+@example\\.com" as a whole`.
 */
export function conditionWords(spec: ClaimConditionDocument): string {
  const list = (values: readonly unknown[]) => values.map((v) => JSON.stringify(v)).join(', ')
  const parts: string[] = []
  if (spec.exists === true) parts.push('be present')
  if (spec.exists === false) parts.push('be absent')
  if (spec.equals !== undefined) parts.push(`equal ${JSON.stringify(spec.equals)}`)
  if (spec.one_of !== undefined) parts.push(`be one of ${list(spec.one_of)}`)
  if (spec.contains !== undefined) parts.push(`contain ${JSON.stringify(spec.contains)}`)
  if (spec.contains_any !== undefined) parts.push(`contain any of ${list(spec.contains_any)}`)
  if (spec.contains_all !== undefined) parts.push(`contain all of ${list(spec.contains_all)}`)
  if (spec.matches !== undefined) parts.push(`match ${JSON.stringify(spec.matches)} as a whole`)
  return `must ${parts.join(' and ')}`
}

/** The longest string `matches` tests; a longer claim fails the condition. */
export const MAX_MATCHED_LENGTH = 1024

function isScalar(v: unknown): v is Scalar {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'
}

/**
 * re2js, loaded with the first `matches` condition: most policies have none, and the engine is
 * 0.65 MB of heap (its 263 KB source kept by V8) a gateway would carry for nothing. Its CommonJS
 * build, so that a policy compiles synchronously.
 */
let re2: typeof RE2JS | undefined
function regexEngine(): typeof RE2JS {
  return (re2 ??= (createRequire(import.meta.url)('re2js') as { RE2JS: typeof RE2JS }).RE2JS)
}

// By source: a large policy repeats its patterns on many routes, and compiling one costs ~0.15 ms
// (a third of the compile time of 5,000 routes). A compiled RE2JS keeps no state between matches.
const compiledPatterns = new Map<string, RE2JS>()

/** A compiled `matches` pattern. */
export interface ClaimPattern {
  test(text: string): boolean
  /** The engine it runs on: always RE2 (re2js), whose matching time is linear in the input. */
  readonly engine: 're2'
}

/**
 * `matches`: anchored, so `admin` does not match `superadmin` and `a|b` means `^(?:a|b)$`; one
 * character is one code point, not half of one. It runs on RE2 (re2js, a pure JavaScript port):
 * matching time is linear in the claim's length for every pattern, so neither nested quantifiers
 * (`(a+)+`, exponential on a backtracking engine) nor a chain of `.*` (`.*-.*-.*-prod`, O(n³):
 * 0.3-0.8 s on a 1024-character claim with V8's engine) can hold the event loop. Chosen over a
 * load-time check (safe-regex2 counts only star height and quantifiers, so `.*-.*-.*-prod` passed
 * it, and no simple check catches every polynomial pattern), over the `re2` native binding (a
 * node-gyp build), and over V8's own linear engine (a process-wide V8 flag, and in Node 20 no `u`
 * or `i` flag and no bound above 16). RE2 has no backreferences or lookaround: a pattern using
 * them is refused at load. The pattern must also be a valid JavaScript regular expression with
 * the `u` flag, so that it reads the same to the people who write and review the policy.
 */
export function compileClaimPattern(source: string, at: DocPath, problem: OnProblem): ClaimPattern | undefined {
  // Checked alone first: `a)|(.*` is invalid on its own, but would escape the anchoring group.
  try {
    new RegExp(source, 'u')
  } catch (err) {
    problem(at, `invalid regular expression ${JSON.stringify(source)}: ${(err as Error).message.replace(/^Invalid regular expression: \/.*\/u?: /, '')}`)
    return undefined
  }
  let compiled = compiledPatterns.get(source)
  try {
    if (compiled === undefined) {
      compiled = regexEngine().compile(`^(?:${source})$`)
      if (compiledPatterns.size >= 10_000) compiledPatterns.clear()
      compiledPatterns.set(source, compiled)
    }
  } catch (err) {
    problem(
      at,
      `regular expression ${JSON.stringify(source)} is refused: it cannot run in linear time (no backreferences or lookaround); RE2: ${(err as Error).message.replace(/^error parsing regexp: /, '')}`,
    )
    return undefined
  }
  const re = compiled
  return { test: (text) => re.matches(text), engine: 're2' }
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
 * Registered claims fast-jwt leaves to us, for every route: `iat`, when present, a number not in
 * the future beyond the skew; `sub`, when present, a string (it becomes an identity header).
 */
export function checkTokenClaims(claims: Record<string, unknown>, clockSkewMs: number, now: number): Denial | undefined {
  const iat = claims.iat
  if (iat !== undefined) {
    if (typeof iat !== 'number' || !Number.isFinite(iat))
      return deny('invalid_claims', 'the iat claim must be a number', failedCheck('iat', iat, 'must be a number'))
    if (iat * 1000 > now + clockSkewMs)
      return deny(
        'issued_in_future',
        'the token is issued in the future',
        failedCheck('iat', iat, `must be at most ${momentText(now + clockSkewMs)} (now, plus the clock skew)`),
      )
  }
  if (claims.sub !== undefined && typeof claims.sub !== 'string')
    return deny('invalid_claims', 'the sub claim must be a string', failedCheck('sub', claims.sub, 'must be a string'))
  return undefined
}

/**
 * The audience (`aud`, or the issuer's `audience_claim`) must be present and name one of the
 * accepted audiences (the issuer's, or the requirement's own).
 */
export function checkAudience(claims: Record<string, unknown>, audiences: ReadonlySet<string>, audienceClaim = 'aud'): Denial | undefined {
  // Own properties only: an audience_claim such as `constructor` must not read Object.prototype.
  const aud = Object.hasOwn(claims, audienceClaim) ? claims[audienceClaim] : undefined
  if (typeof aud === 'string') {
    if (!audiences.has(aud)) return deny('wrong_audience', 'the token is not meant for this audience', audienceCheck(audienceClaim, aud, audiences))
  } else if (Array.isArray(aud)) {
    let match = false
    for (const a of aud) {
      if (typeof a !== 'string')
        return deny('invalid_claims', `the ${audienceClaim} claim must be a string or an array of strings`, audienceCheck(audienceClaim, aud, audiences))
      if (audiences.has(a)) match = true
    }
    if (!match) return deny('wrong_audience', 'the token is not meant for this audience', audienceCheck(audienceClaim, aud, audiences))
  } else if (aud === undefined) {
    return deny('wrong_audience', `the token has no ${audienceClaim} claim`, audienceCheck(audienceClaim, aud, audiences))
  } else {
    return deny('invalid_claims', `the ${audienceClaim} claim must be a string or an array of strings`, audienceCheck(audienceClaim, aud, audiences))
  }
  return undefined
}

/** What an audience check wanted, made only for a refusal. */
function audienceCheck(audienceClaim: string, aud: unknown, audiences: ReadonlySet<string>) {
  return failedCheck(audienceClaim, aud, `must be ${oneOf(audiences)}`, [...audiences])
}

/** A moment as a NumericDate and its UTC time, for what a time claim had to be: `1767225600 (2026-01-01T00:00:00.000Z)`. */
export function momentText(ms: number): string {
  return `${Math.floor(ms / 1000)} (${new Date(ms).toISOString()})`
}
