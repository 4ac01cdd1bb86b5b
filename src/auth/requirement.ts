// A route's requirement: which tokens it accepts. Like Envoy's JwtRequirement it is a tree: a
// token check (issuers, and what their token must carry), or `any` / `all` of requirements,
// nested as deep as needed. Compiled once when the policy loads; evaluated on every request
// against a token whose signature and registered claims were already checked.
import { durationMs } from '../policy/duration.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import type { RequirementDocument } from '../policy/schema.js'
import { checkAudience, claimAt, compileCondition, conditionHolds, grantedScopes, parseClaimPath, type ClaimCondition, type ClaimPath } from './claims.js'
import { deny, type Denial } from '../http/denial.js'
import type { Issuer } from './issuer.js'

/** What a requirement is checked against: a verified token. */
export interface TokenFacts {
  issuer: Issuer
  claims: Record<string, unknown>
  /** The header's `typ` (undefined when absent); null when unknown, as for claims given as verified offline: then `typ` is not checked. */
  typ: string | undefined | null
}

export interface Requirement {
  /** Every issuer some part of the tree accepts: the token's iss picks one (src/auth/issuer_set.ts) before any key is used. */
  readonly issuers: readonly Issuer[]
  /** undefined when the token meets the requirement; otherwise the denial (see `any` for which one). */
  check(token: TokenFacts, now: number): Denial | undefined
  /**
   * The aud values a token of this issuer needs to meet the requirement: one per token check
   * on its way (the first audience each accepts). For claims written by hand (`explain`, `test`).
   */
  audiencesFor(issuer: Issuer): string[]
}

interface Node {
  /** The issuers whose tokens can meet this node: a token has one iss. */
  readonly issuers: ReadonlySet<Issuer>
  /** Scopes every token meeting this node must grant, for the `scope` of a 403. */
  readonly scopes: readonly string[]
  check(token: TokenFacts, now: number): Denial | undefined
  audiencesFor(issuer: Issuer): string[]
}

export interface RequirementContext {
  issuers: ReadonlyMap<string, Issuer>
  problem: OnProblem
}

const TOKEN_CHECK_FIELDS = ['audiences', 'claims', 'scopes', 'require_claims', 'max_age', 'typ'] as const

/** The compiled requirement, or undefined after reporting every problem found in it. */
export function compileRequirement(doc: RequirementDocument, at: DocPath, ctx: RequirementContext): Requirement | undefined {
  const root = compileNode(doc, at, ctx)
  if (!root) return undefined
  return { issuers: [...root.issuers], check: (token, now) => root.check(token, now), audiencesFor: (issuer) => root.audiencesFor(issuer) }
}

function compileNode(doc: RequirementDocument, at: DocPath, ctx: RequirementContext): Node | undefined {
  const kinds = (['issuers', 'any', 'all'] as const).filter((k) => doc[k] !== undefined)
  if (kinds.length !== 1) {
    ctx.problem(
      at,
      kinds.length ? `a requirement has one of issuers, any or all, not several (found ${kinds.join(', ')})` : 'a requirement needs issuers, any or all',
    )
    return undefined
  }
  if (doc.issuers) return compileTokenCheck(doc as RequirementDocument & { issuers: string[] }, at, ctx)
  const misplaced = TOKEN_CHECK_FIELDS.filter((k) => doc[k] !== undefined)
  if (misplaced.length) {
    ctx.problem(
      [...at, misplaced[0]!],
      `${misplaced.join(', ')} ${misplaced.length > 1 ? 'belong' : 'belongs'} to a requirement with issuers; with ${kinds[0]}, put ${misplaced.length > 1 ? 'them' : 'it'} in each requirement of the list`,
    )
    return undefined
  }
  const kind = kinds[0] as 'any' | 'all'
  const children = doc[kind]!.map((child, i) => compileNode(child, [...at, kind, i], ctx))
  if (children.some((c) => c === undefined)) return undefined
  return kind === 'any' ? anyOf(children as Node[]) : allOf(children as Node[], [...at, 'all'], ctx)
}

// ---- any and all ------------------------------------------------------------------------------

/**
 * Met when one alternative is met. When none is, the denial is the one of the alternative the
 * token got furthest in: a valid token lacking claims (403) over one whose audience, type or
 * age did not fit (401), over an issuer the alternative does not take (401 wrong_issuer). Ties
 * go to the alternative written first. So a token from the right issuer hears what it lacks,
 * not that some other alternative wanted another issuer.
 */
function anyOf(children: Node[]): Node {
  return {
    issuers: new Set(children.flatMap((c) => [...c.issuers])),
    // Whichever alternative is met, these scopes are granted.
    scopes: children.slice(1).reduce((common, c) => common.filter((s) => c.scopes.includes(s)), children[0]!.scopes),
    check(token, now) {
      let best: Denial | undefined
      for (const child of children) {
        const denial = child.check(token, now)
        if (!denial) return undefined
        if (!best || progress(denial) > progress(best)) best = denial
      }
      return best
    },
    audiencesFor: (issuer) => children.find((c) => c.issuers.has(issuer))?.audiencesFor(issuer) ?? [],
  }
}

function progress(denial: Denial): number {
  if (denial.reason === 'wrong_issuer') return 0
  if (denial.reason === 'wrong_audience') return 1
  return denial.status === 403 ? 3 : 2
}

/** Met when every requirement is met; the first that is not gives the denial. */
function allOf(children: Node[], at: DocPath, ctx: RequirementContext): Node | undefined {
  const issuers = new Set([...children[0]!.issuers].filter((i) => children.every((c) => c.issuers.has(i))))
  if (issuers.size === 0) {
    ctx.problem(at, 'no issuer is accepted by every requirement of all: a token has one iss, so this requirement can never be met')
    return undefined
  }
  const scopes = union(children.map((c) => c.scopes))
  return {
    issuers,
    scopes,
    check(token, now) {
      for (const child of children) {
        const denial = child.check(token, now)
        if (denial) {
          // The client needs every scope of the whole requirement, not just the failing part's.
          if (denial.status === 403 && scopes.length) denial.scope = union([scopes, denial.scope?.split(' ') ?? []]).join(' ')
          return denial
        }
      }
      return undefined
    },
    audiencesFor: (issuer) => union(children.map((c) => c.audiencesFor(issuer))),
  }
}

function union(lists: ReadonlyArray<readonly string[]>): string[] {
  return [...new Set(lists.flat())]
}

// ---- one token check ----------------------------------------------------------------------------

function compileTokenCheck(doc: RequirementDocument & { issuers: string[] }, at: DocPath, ctx: RequirementContext): Node | undefined {
  let ok = true
  const fail = (where: DocPath, message: string) => {
    ctx.problem([...at, ...where], message)
    ok = false
  }

  const issuers = new Set<Issuer>()
  doc.issuers.forEach((name, i) => {
    const issuer = ctx.issuers.get(name)
    if (issuer) issuers.add(issuer)
    else fail(['issuers', i], `unknown issuer "${name}"${ctx.issuers.size ? ` (known: ${[...ctx.issuers.keys()].join(', ')})` : ''}`)
  })
  const conditions: ClaimCondition[] = []
  for (const [label, spec] of Object.entries(doc.claims ?? {})) {
    const condition = compileCondition(label, spec, ['claims', label], fail)
    if (condition) conditions.push(condition)
  }
  const required: Array<{ label: string; path: ClaimPath }> = []
  doc.require_claims?.forEach((label, i) => {
    const path = parseClaimPath(label, ['require_claims', i], fail)
    if (path) required.push({ label, path })
  })
  const maxAgeMs = doc.max_age === undefined ? undefined : durationMs(doc.max_age)
  if (maxAgeMs !== undefined && maxAgeMs <= 0) fail(['max_age'], 'max_age must be more than 0')
  if (!ok) return undefined

  const scopes = doc.scopes ?? []
  const scopeText = scopes.length ? scopes.join(' ') : undefined
  const insufficient = (description: string): Denial => {
    const denial = deny('insufficient_claims', description)
    if (scopeText) denial.scope = scopeText
    return denial
  }
  const audiences = doc.audiences ? new Set(doc.audiences) : undefined
  const types = doc.typ === undefined ? undefined : new Set((typeof doc.typ === 'string' ? [doc.typ] : doc.typ).map(mediaType))

  return {
    issuers,
    scopes,
    audiencesFor: (issuer) => (issuers.has(issuer) ? [...(audiences ?? issuer.audiences)].slice(0, 1) : []),
    check(token, now) {
      if (!issuers.has(token.issuer)) return deny('wrong_issuer', 'the token issuer is not accepted here')
      const { claims } = token
      // The issuer's audience_claim is read whichever audiences apply: it is where its tokens say who they are for.
      const wrongAudience = checkAudience(claims, audiences ?? token.issuer.audiences, token.issuer.audienceClaim)
      if (wrongAudience) return wrongAudience
      if (types && token.typ !== null && (token.typ === undefined || !types.has(mediaType(token.typ)))) {
        return deny('wrong_type', 'the token type (typ header) is not accepted here')
      }
      for (const r of required) {
        const value = claimAt(claims, r.path)
        if (value === undefined || value === null) return deny('invalid_claims', `the token lacks the claim ${r.label}, which this route requires`)
      }
      if (maxAgeMs !== undefined) {
        // iat, when present, is a finite number: checkTokenClaims ran first.
        if (claims.iat === undefined) return deny('invalid_claims', 'the token has no iat claim, which max_age needs')
        if (now - (claims.iat as number) * 1000 > maxAgeMs + token.issuer.clockSkewMs)
          return deny('expired', 'the token is older than this route accepts (max_age)')
      }
      for (const condition of conditions) {
        if (!conditionHolds(condition, claims)) return insufficient(`the token lacks the required claim ${condition.label}`)
      }
      if (scopes.length) {
        const granted = grantedScopes(claims)
        for (const scope of scopes) if (!granted.includes(scope)) return insufficient('the token lacks a required scope')
      }
      return undefined
    },
  }
}

/**
 * RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, and `application/` may
 * be left out; `at+jwt`, `AT+JWT` and `application/at+jwt` are the same type.
 */
export function mediaType(typ: string): string {
  const lower = typ.toLowerCase()
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower
}
