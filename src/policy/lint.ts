// Warnings for a policy that is valid but may not do what its author meant: default-deny
// surprises a reviewer should see before rollout. (A route shadowed by an earlier one is an
// error, reported by the compiler.)
import { TENANT_PLACEHOLDER } from '../auth/issuer_template.js'
import type { IssuerDocument, RouteDocument } from './schema.js'
import { compileHostPattern, compilePathPattern, CoverIndex, coverPrefix, hostCovers, patternCovers, type HostPattern } from '../routing/route_table.js'

export interface Warning {
  /** Index into routes. */
  route: number
  message: string
}

/**
 * A route limited to some methods or a host leaves the other methods or hosts of its paths to
 * the other routes; when none of them covers those paths, such requests get 404. That is
 * deny-by-default working as designed, but often not what was meant (a POST to a GET-only API,
 * a request by IP instead of host name). Routes that split one path between them (GET on one,
 * POST on the next) serve the methods of both, and are warned about once.
 */
export function lintRoutes(routes: readonly RouteDocument[]): Warning[] {
  // An invalid pattern or host is the compiler's to report; here it just covers nothing.
  const patterns = routes.map((r, i) => compilePathPattern(r.path, ['routes', i, 'path'], () => {}))
  // Host patterns are compiled when a comparison needs one.
  const hosts: Array<HostPattern | null | undefined> = []
  const hostOf = (i: number) => {
    if (!(i in hosts)) hosts[i] = routes[i]!.host === undefined ? null : compileHostPattern(routes[i]!.host!, ['routes', i, 'host'], () => {})
    return hosts[i]
  }
  // Only the routes filed on a route's branch can cover its paths: compared with those alone,
  // not with every other route (5,000 routes were 12.5 million comparisons).
  const index = new CoverIndex()
  const prefixes = patterns.map((p) => (p ? coverPrefix(p) : []))
  for (const [i, p] of patterns.entries()) if (p) index.add(i, prefixes[i]!)
  const warnings: Warning[] = []
  const said = new Set<string>()
  routes.forEach((route, i) => {
    const pattern = patterns[i]
    if ((!route.methods && route.host === undefined) || !pattern) return
    const candidates = index.candidates(prefixes[i]!).filter((j) => j !== i)
    // The usual case first: a route for every method and host that takes all these paths.
    const anyRequest = (j: number) => !routes[j]!.methods && routes[j]!.host === undefined
    if (candidates.some((j) => anyRequest(j) && patternCovers(patterns[j]!, pattern))) return
    const host = hostOf(i)
    if (host === undefined) return
    // The methods served on this route's paths for its host, and for the other hosts.
    const served: Served = { sameHost: route.methods ? new Set(route.methods) : 'all', otherHosts: host ? new Set() : 'all' }
    for (const j of candidates) {
      if (anyRequest(j)) continue // it does not cover these paths: seen above
      const other = routes[j]!
      const otherHost = hostOf(j)
      // The cheap checks first: patternCovers is the costly one.
      const sameHost = otherHost === null || (host !== null && otherHost !== undefined && hostCovers(otherHost, host))
      if (!sameHost || !patternCovers(patterns[j]!, pattern)) continue
      served.sameHost = addMethods(served.sameHost, other.methods)
      if (otherHost === null) served.otherHosts = addMethods(served.otherHosts, other.methods)
      if (served.sameHost === 'all' && served.otherHosts === 'all') return
    }
    const message = `requests to ${route.path} with ${unserved(served, route.host)} match no route and get 404`
    if (said.has(message)) return
    said.add(message)
    warnings.push({ route: i, message })
  })
  return warnings
}

interface Served {
  sameHost: Set<string> | 'all'
  otherHosts: Set<string> | 'all'
}

function addMethods(served: Set<string> | 'all', methods: readonly string[] | undefined): Set<string> | 'all' {
  if (served === 'all' || !methods) return 'all'
  for (const m of methods) served.add(m)
  return served
}

/** `methods other than GET, POST`, `hosts other than api.example.com`, or both joined by "or". */
function unserved(served: Served, host: string | undefined): string {
  const other = (methods: Set<string>) => `methods other than ${[...methods].sort().join(', ')}`
  const parts: string[] = []
  if (served.sameHost !== 'all') parts.push(other(served.sameHost))
  if (served.otherHosts !== 'all') parts.push(served.otherHosts.size ? `hosts other than ${host} and ${other(served.otherHosts)}` : `hosts other than ${host}`)
  return parts.join(' or ')
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
