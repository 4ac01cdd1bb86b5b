// One entry of the policy's `routes:` compiled: its matchers, upstream, requirement, token
// sources, identity headers, CORS rule and limits, assembled from the section compilers.
import type { AuthRule } from '../auth/authenticate.js'
import { routeBinding } from '../auth/binding.js'
import { compileBinding } from '../auth/issuer_config.js'
import type { Issuer } from '../auth/issuer.js'
import { IssuerSet } from '../auth/issuer_set.js'
import { compileRequirement } from '../auth/requirement.js'
import { compileRouteTokenSources } from '../auth/route_token_sources.js'
import { compileCors, type CorsRule } from '../proxy/cors.js'
import { headerCopy } from '../proxy/forward.js'
import { compileRouteIdentity, type IdentityDefaults } from '../proxy/identity_config.js'
import type { Upstream } from '../proxy/upstream.js'
import { compileHostPattern, compilePathPattern, type RouteCandidate } from '../routing/route_table.js'
import { deepFreeze, type Route } from './compiled.js'
import { defaultsOf } from './defaults.js'
import { durationMs } from './duration.js'
import type { DocPath, OnProblem } from './problems.js'
import { RouteSchema, type RouteDocument } from './schema.js'

const DEFAULT = defaultsOf(RouteSchema, ['forward_token', 'forward_dpop_proof', 'mode', 'websocket', 'allow_ambiguous_paths', 'grpc', 'max_grpc_timeout'])

/** The names the policy declares, compiled or not (see compile.ts declaredNames). */
export interface Declared {
  issuers: ReadonlySet<string>
  upstreams: ReadonlySet<string>
}

export interface RouteContext {
  upstreams: ReadonlyMap<string, Upstream>
  issuers: ReadonlyMap<string, Issuer>
  declared: Declared
  identity: IdentityDefaults
  /** Whether the policy has a revocation: section (replay protection needs its backend). */
  revocation: boolean
  /** The global CORS rule, which routes without their own `cors` use. */
  cors: CorsRule | null
  /** `limits.max_body_bytes`, for routes without their own. */
  maxBodyBytes: number
  problem: OnProblem
}

export type RouteMatcher = Omit<RouteCandidate<never>, 'value'>

/** What a route matches: its path, host and methods; undefined after saying what is wrong with its path or host. */
export function compileRouteMatcher(spec: RouteDocument, index: number, problem: OnProblem): RouteMatcher | undefined {
  const at: DocPath = ['routes', index]
  const path = compilePathPattern(spec.path, [...at, 'path'], problem)
  const host = spec.host === undefined ? null : compileHostPattern(spec.host, [...at, 'host'], problem)
  if (!path || host === undefined) return undefined
  return { path, host, methods: spec.methods ? new Set(spec.methods) : null }
}

/**
 * One route, ready for the route table; undefined after saying every problem found in it.
 * `matcher`: compileRouteMatcher's, undefined when it had problems (said there).
 */
export function compileRoute(
  spec: RouteDocument,
  index: number,
  name: string,
  matcher: RouteMatcher | undefined,
  ctx: RouteContext,
): RouteCandidate<Route> | undefined {
  const at: DocPath = ['routes', index]
  let ok = matcher !== undefined
  const fail = (where: DocPath, m: string) => {
    ctx.problem([...at, ...where], m)
    ok = false
  }

  const upstream = ctx.upstreams.get(spec.upstream)
  // One the policy declares has a problem of its own, said where it is declared.
  if (!upstream && !ctx.declared.upstreams.has(spec.upstream)) fail(['upstream'], `unknown upstream "${spec.upstream}"${known(ctx.declared.upstreams)}`)

  let auth: AuthRule | null = null
  if (spec.auth !== 'none') {
    const requirement = compileRequirement(spec.auth, [...at, 'auth'], ctx)
    // The route's own binding replaces each issuer's.
    const binding = routeBinding(compileBinding(spec.auth.binding), requirement?.issuers ?? [])
    // Sources are read for every issuer the requirement accepts somewhere in its tree.
    const sources = compileRouteTokenSources(spec.token_sources, requirement?.issuers ?? [], fail, binding?.dpop ?? false)
    if (requirement && sources) {
      auth = {
        issuers: new IssuerSet(requirement.issuers),
        sources,
        requirement,
        ...(spec.auth.optional ? { optional: true } : {}),
        ...(spec.replay_protection ? { replayProtection: true } : {}),
        ...(binding ? { binding } : {}),
      }
    } else {
      ok = false
    }
  } else if (spec.token_sources) {
    fail(['token_sources'], 'token_sources needs a token: the route has auth: none')
  }
  if (spec.replay_protection) {
    if (spec.auth === 'none') fail(['replay_protection'], 'replay_protection needs a token: the route has auth: none')
    else if (!ctx.revocation) fail(['replay_protection'], 'replay_protection needs a revocation: section, whose backend records the used tokens')
  }
  if (spec.auth === 'none') {
    // Without a token there is nothing to report on and no identity to send: almost certainly a mistake.
    if (spec.mode === 'report') fail(['mode'], 'mode: report needs a token to report on: the route has auth: none')
    for (const field of ['identity_headers', 'forward_payload_header'] as const) {
      if (spec[field] !== undefined) fail([field], `${field} needs a token: the route has auth: none`)
    }
  }
  const identity = compileRouteIdentity(spec, at, ctx.identity, ctx.problem)
  // A WebSocket handshake is a GET; the route could never see one.
  if (spec.websocket && spec.methods && !spec.methods.includes('GET'))
    fail(['websocket'], 'websocket: true needs GET in methods: a WebSocket handshake is a GET request')
  // gRPC needs HTTP/2 end to end (its status comes in trailers, its calls stream both ways): an
  // upstream spoken to over HTTP/1.1 could not carry one call, so it is refused here, not at run time.
  if (spec.grpc && upstream && upstream.protocol === 'http1')
    fail(
      ['grpc'],
      `grpc: true needs an upstream that speaks HTTP/2: upstreams.${upstream.name} has protocol http1; give it protocol: h2c (http://) or h2 (https://)`,
    )
  if (spec.grpc && spec.websocket) fail(['websocket'], 'a gRPC route carries no WebSocket upgrades (HTTP/2 has none)')
  let cors = ctx.cors
  if (spec.cors === false) cors = null
  else if (spec.cors) {
    cors = compileCors(spec.cors, [...at, 'cors'], ctx.problem) ?? null
    if (!cors) ok = false
  }
  if (!ok || !matcher || !upstream || !identity) return undefined
  const forwardToken = spec.forward_token ?? DEFAULT.forward_token
  // A proof is for the gateway, like the token: kept from the upstream where the gateway checks proofs.
  const withholdProof = auth?.sources.dpop === true && !(spec.forward_dpop_proof ?? DEFAULT.forward_dpop_proof)
  const route: Route = deepFreeze({
    index,
    name,
    upstream,
    auth,
    report: (spec.mode ?? DEFAULT.mode) === 'report',
    identity,
    forwardToken,
    cors,
    websocket: spec.websocket ?? DEFAULT.websocket,
    grpc: spec.grpc ?? DEFAULT.grpc,
    maxBodyBytes: spec.max_body_bytes ?? ctx.maxBodyBytes,
    maxGrpcTimeoutMs: durationMs(spec.max_grpc_timeout ?? DEFAULT.max_grpc_timeout),
    allowAmbiguousPaths: spec.allow_ambiguous_paths ?? DEFAULT.allow_ambiguous_paths,
    headerCopy: headerCopy(auth?.sources, forwardToken, ctx.identity.strip, withholdProof),
  })
  return { ...matcher, value: route }
}

function known(names: ReadonlySet<string>): string {
  return names.size ? ` (known: ${[...names].join(', ')})` : ''
}
