// Small pieces `explain` and `test` share.
// Everything that decides goes through `decide`, the proxy's own code.
import { momentText } from './auth/claims.js'
import { decide, type Decision } from './decide.js'
import type { FailedCheck } from './http/denial.js'
import type { Issuer } from './auth/issuer.js'
import type { CompiledPolicy, Route } from './policy/compile.js'

/**
 * The identity headers the proxy would set, as `decide` computed them. Empty for a denial, an
 * `auth: none` route and an optional route's request without a token (no identity).
 */
export function identityHeadersOf(decision: Decision): Record<string, string> {
  if (decision.denial) return {}
  return decision.identityHeaders ?? {}
}

/**
 * Claims written by hand (`explain --claims`, inline tokens in a test file) mean "a token this
 * route accepts, with these claims": a missing iss becomes the route's first issuer (for a
 * multi-tenant one, with the claims' tid or its first tenant), a missing aud (or the issuer's
 * audience_claim) the audience the route's requirement wants from that issuer (its own
 * `audiences`, or the issuer's first; a list when an `all` wants several). A given iss or aud
 * always wins; `null` leaves the claim out.
 */
export function withRouteDefaults(claims: Record<string, unknown>, route: Route | undefined): Record<string, unknown> {
  const out = { ...claims }
  const issuer = route?.auth?.issuers.list[0]
  // The audience goes where the issuer looks for it (aud, or its audience_claim).
  const audience = issuer?.audienceClaim ?? 'aud'
  if (issuer && !Object.hasOwn(out, 'iss')) out.iss = defaultIss(issuer, out)
  if (issuer && !Object.hasOwn(out, audience)) {
    const audiences = route!.auth!.requirement.audiencesFor(issuer)
    out[audience] = audiences.length === 1 ? audiences[0] : audiences
  }
  for (const name of ['iss', audience]) if (out[name] === null || out[name] === undefined) delete out[name]
  return out
}

/** The issuer's iss; for a multi-tenant issuer, with the claims' tid or its first listed tenant. */
function defaultIss(issuer: Issuer, claims: Record<string, unknown>): string | undefined {
  if (!issuer.template) return issuer.issuer
  const tid = typeof claims.tid === 'string' ? claims.tid : issuer.template.tenants?.values().next().value
  if (tid === undefined) return undefined
  claims.tid = tid
  return issuer.template.prefix + tid + issuer.template.suffix
}

/** The route `decide` picks for a request, found by running it once without credentials. */
export async function routeFor(policy: CompiledPolicy, method: string, host: string | undefined, target: string): Promise<Route | undefined> {
  const probe: Decision = {}
  await decide(policy, method, host, target, { rawHeaders: [] }, probe)
  return probe.route
}

/** `iss must be "https://idp.example.com/"; found "https://idp.example.com"`: what refused a token. */
export function checkText(check: FailedCheck): string {
  return `${check.claim} ${check.wanted}; found ${valueText(check.claim, check.found)}`
}

const TIME_CLAIMS = new Set(['exp', 'nbf', 'iat'])

function valueText(claim: string, value: unknown): string {
  if (value === undefined) return 'nothing'
  // A time claim with the moment it names.
  if (TIME_CLAIMS.has(claim) && typeof value === 'number' && Number.isFinite(value) && Math.abs(value) < 8.64e12) return momentText(value * 1000)
  return JSON.stringify(value)
}
