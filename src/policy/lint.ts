// Warnings for a policy that is valid but may not do what its author meant: default-deny
// surprises a reviewer should see before rollout. (A route shadowed by an earlier one is an
// error, reported by the compiler.)
import { TENANT_PLACEHOLDER } from '../auth/issuer_template.js'
import type { IssuerDocument, RouteDocument } from './schema.js'
import { compilePathPattern, patternCovers } from '../routing/route_table.js'

export interface Warning {
  /** Index into routes. */
  route: number
  message: string
}

/**
 * A route limited to some methods or a host leaves the other methods or hosts of its paths to
 * the routes after it; when none of them covers those paths, such requests get 404. That is
 * deny-by-default working as designed, but often not what was meant (a POST to a GET-only API,
 * a request by IP instead of host name).
 */
export function lintRoutes(routes: readonly RouteDocument[]): Warning[] {
  const warnings: Warning[] = []
  // An invalid pattern is the compiler's to report; here it just covers nothing.
  const patterns = routes.map((r, i) => compilePathPattern(r.path, ['routes', i, 'path'], () => {}))
  routes.forEach((route, i) => {
    const pattern = patterns[i]
    if ((!route.methods && route.host === undefined) || !pattern) return
    const fallback = routes.slice(i + 1).some((later, k) => {
      const laterPattern = patterns[i + 1 + k]
      // The cheap checks first: patternCovers for every later route made validate quadratic.
      return !later.methods && later.host === undefined && laterPattern !== undefined && patternCovers(laterPattern, pattern)
    })
    if (fallback) return
    const limits = [route.methods ? `methods other than ${route.methods.join(', ')}` : '', route.host !== undefined ? `hosts other than ${route.host}` : '']
      .filter(Boolean)
      .join(' or ')
    warnings.push({ route: i, message: `requests to ${route.path} with ${limits} match no route and get 404` })
  })
  return warnings
}

/**
 * A multi-tenant issuer without `tenants` accepts a token from any tenant of the IdP: anyone
 * can create a tenant of Entra and sign in with it. That is right for a multi-tenant SaaS app
 * and wrong for almost everything else, so it is said aloud.
 */
export function lintIssuers(issuers: Readonly<Record<string, IssuerDocument>> | undefined): Array<{ issuer: string; message: string }> {
  return Object.entries(issuers ?? {})
    .filter(([, spec]) => spec.issuer.includes(TENANT_PLACEHOLDER) && !spec.tenants)
    .map(([name, spec]) => ({ issuer: name, message: `issuers.${name} accepts tokens of every tenant of ${spec.issuer}; list tenants: to accept only yours` }))
}
