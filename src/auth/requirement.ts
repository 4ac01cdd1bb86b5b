// A route's requirement: which tokens it accepts. Like Envoy's JwtRequirement it is a tree: a
// token check (issuers, and what their token must carry), or `any` / `all` of requirements,
// nested as deep as needed. Compiled once when the policy loads; evaluated on every request
// against a token whose signature and registered claims were already checked.
import { durationMs } from '../policy/duration.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import type { RequirementDocument } from '../policy/schema.js'
import {
  checkAudience,
  claimAt,
  compileCondition,
  conditionHolds,
  conditionWords,
  grantedScopes,
  parseClaimPath,
  type ClaimCondition,
  type ClaimPath,
} from './claims.js'
import { deny, failedCheck, oneOf, type Denial, type FailedCheck } from '../http/denial.js'
import { acceptedIss } from './issuer_set.js'
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
  /**
   * undefined when the token meets the requirement; otherwise the denial (see `any` for which
   * one). With `all` (`jwtgate explain`), every check the token fails is added to it, not only
   * the one that decides; the denial returned is the same.
   */
  check(token: TokenFacts, now: number, all?: Denial[]): Denial | undefined
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
  check(token: TokenFacts, now: number, all?: Denial[]): Denial | undefined
  audiencesFor(issuer: Issuer): string[]
}

export interface RequirementContext {
  issuers: ReadonlyMap<string, Issuer>
  /** Every issuer name the policy declares: one that did not compile has its own problem, said where it is declared. */
  declared?: { issuers: ReadonlySet<string> }
  problem: OnProblem
}

const TOKEN_CHECK_FIELDS = ['audiences', 'claims', 'scopes', 'require_claims', 'max_age', 'typ'] as const

/** The compiled requirement, or undefined after reporting every problem found in it. */
export function compileRequirement(doc: RequirementDocument, at: DocPath, ctx: RequirementContext): Requirement | undefined {
  const root = compileNode(doc, at, ctx)
  if (!root) return undefined
  return { issuers: [...root.issuers], check: (token, now, all) => root.check(token, now, all), audiencesFor: (issuer) => root.audiencesFor(issuer) }
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
    check(token, now, all) {
      let best: Denial | undefined
      // Explain: every failure of the alternative whose denial is the answer.
      let bestFailures: Denial[] | undefined
      for (const child of children) {
        const failures: Denial[] | undefined = all && []
        const denial = child.check(token, now, failures)
        if (!denial) return undefined
        if (!best || progress(denial) > progress(best)) {
          best = denial
          bestFailures = failures
        }
      }
      if (all) all.push(...bestFailures!)
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
    check(token, now, all) {
      let first: Denial | undefined
      for (const child of children) {
        const denial = child.check(token, now, all)
        if (denial && !first) {
          // The client needs every scope of the whole requirement, not just the failing part's.
          if (denial.status === 403 && scopes.length) denial.scope = union([scopes, denial.scope?.split(' ') ?? []]).join(' ')
          first = denial
          if (!all) return first
        }
      }
      return first
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
  const declared = ctx.declared?.issuers ?? new Set(ctx.issuers.keys())
  doc.issuers.forEach((name, i) => {
    const issuer = ctx.issuers.get(name)
    if (issuer) issuers.add(issuer)
    else if (declared.has(name)) ok = false
    else fail(['issuers', i], `unknown issuer "${name}"${declared.size ? ` (known: ${[...declared].join(', ')})` : ''}`)
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
  const insufficient = (description: string, check: FailedCheck): Denial => {
    const denial = deny('insufficient_claims', description, check)
    if (scopeText) denial.scope = scopeText
    return denial
  }
  const audiences = doc.audiences ? new Set(doc.audiences) : undefined
  const typList = doc.typ === undefined ? undefined : typeof doc.typ === 'string' ? [doc.typ] : doc.typ
  const types = typList && new Set(typList.map(mediaType))
  // Words for refusals, made at the first (a large policy compiles thousands of checks, most of
  // which never refuse anything) and kept. The client hears which value a claim lacks, as the
  // scope of a 403 names the scopes: a token valid and of an accepted issuer gets that far.
  let memo: RefusalWords | undefined
  const words = (): RefusalWords => (memo ??= refusalWords(issuers, typList, scopes, doc.max_age, conditions))

  return {
    issuers,
    scopes,
    audiencesFor: (issuer) => (issuers.has(issuer) ? [...(audiences ?? issuer.audiences)].slice(0, 1) : []),
    // Each failed check is the answer; with `all` (explain) it is noted there and the others run too.
    check(token, now, all) {
      if (!issuers.has(token.issuer)) {
        // Another issuer's token: nothing more of this check is about it.
        const denial = deny('wrong_issuer', 'the token issuer is not accepted here', failedCheck('iss', token.claims.iss, words().iss, words().accepted))
        all?.push(denial)
        return denial
      }
      const start = all?.length ?? 0
      const { claims } = token
      // The issuer's audience_claim is read whichever audiences apply: it is where its tokens say who they are for.
      const wrongAudience = checkAudience(claims, audiences ?? token.issuer.audiences, token.issuer.audienceClaim)
      if (wrongAudience) {
        if (!all) return wrongAudience
        all.push(wrongAudience)
      }
      if (types && token.typ !== null && (token.typ === undefined || !types.has(mediaType(token.typ)))) {
        const denial = deny('wrong_type', 'the token type (typ header) is not accepted here', failedCheck('typ', token.typ, words().typ!))
        if (!all) return denial
        all.push(denial)
      }
      for (const r of required) {
        const value = claimAt(claims, r.path)
        if (value !== undefined && value !== null) continue
        const denial = deny('invalid_claims', `the token lacks the claim ${r.label}, which this route requires`, failedCheck(r.label, value, 'must be present'))
        if (!all) return denial
        all.push(denial)
      }
      if (maxAgeMs !== undefined) {
        // iat, when present, is a finite number: checkTokenClaims ran first.
        const denial =
          claims.iat === undefined
            ? deny('invalid_claims', 'the token has no iat claim, which max_age needs', failedCheck('iat', undefined, words().maxAge))
            : now - (claims.iat as number) * 1000 > maxAgeMs + token.issuer.clockSkewMs
              ? deny('expired', 'the token is older than this route accepts (max_age)', failedCheck('iat', claims.iat, words().maxAge))
              : undefined
        if (denial) {
          if (!all) return denial
          all.push(denial)
        }
      }
      for (let i = 0; i < conditions.length; i++) {
        const condition = conditions[i]!
        if (conditionHolds(condition, claims)) continue
        const { lacking, conditions: wanted } = words()
        const denial = insufficient(lacking[i]!, failedCheck(condition.label, claimAt(claims, condition.path), wanted[i]!))
        if (!all) return denial
        all.push(denial)
      }
      if (scopes.length) {
        const granted = grantedScopes(claims)
        for (const scope of scopes) {
          if (granted.includes(scope)) continue
          const denial = insufficient('the token lacks a required scope', failedCheck('scope', granted, words().scopes))
          if (!all) return denial
          all.push(denial)
          break
        }
      }
      return all?.[start]
    },
  }
}

interface RefusalWords {
  iss: string
  accepted: string[]
  typ: string | undefined
  scopes: string
  maxAge: string
  /** By condition: what it wants, and the 403's description. */
  conditions: string[]
  lacking: string[]
}

function refusalWords(
  issuers: ReadonlySet<Issuer>,
  typ: readonly string[] | undefined,
  scopes: readonly string[],
  maxAge: string | number | undefined,
  conditions: readonly ClaimCondition[],
): RefusalWords {
  const accepted = acceptedIss(issuers)
  const wanted = conditions.map((c) => conditionWords(c.spec))
  return {
    iss: `must be ${oneOf(accepted)}`,
    accepted,
    typ: typ && `must be ${oneOf(typ)}`,
    scopes: `must grant ${scopes.join(' ')}`,
    maxAge: `must be within ${typeof maxAge === 'number' ? `${maxAge}s` : maxAge} before now (max_age)`,
    conditions: wanted,
    lacking: conditions.map((c, i) => `the token lacks the required claim ${c.label} (it ${wanted[i]})`),
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
