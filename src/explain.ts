// `jwtgate explain`, and the status page's "ask the policy" form: what the gateway would do with
// one request, and why. The answer comes from `decide` (src/decide.ts), the very function the
// proxy runs; this file only gathers its result and the policy text around it (route patterns,
// methods, claim conditions) into something a person can read, or one JSON object.
import { createHash, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createDecoder } from 'fast-jwt'
import type { Credentials } from './auth/authenticate.js'
import { conditionWords } from './auth/claims.js'
import type { Denial, FailedCheck } from './http/denial.js'
import { decide, type Decision } from './decide.js'
import { grpcStatusOf } from './http/grpc_status.js'
import { createLogger } from './log.js'
import { accessTokenHash } from './auth/dpop.js'
import type { Issuer } from './auth/issuer.js'
import { compilePolicy, type CompiledPolicy, type Route } from './policy/compile.js'
import { readPolicyDraft } from './policy/load.js'
import type { ClaimConditionDocument, PolicyDocument, RequirementDocument, RouteDocument } from './policy/schema.js'
import { addCorsHeaders, headerRecord, type Preflight } from './proxy/cors.js'
import { upstreamUrl } from './proxy/forward.js'
import { forwardedQuery } from './proxy/token_removal.js'
import { splitTarget } from './routing/normalize.js'
import { hostFromHeader, type Mismatch } from './routing/route_table.js'
import { checkText, identityHeadersOf, routeFor, withRouteDefaults } from './report.js'

export interface ExplainOptions extends Question {
  policyFile: string
}

/** One request to explain, against a policy already loaded. */
export interface Question {
  /** Upper case. */
  method: string
  /** The request target as a client would send it: path and optional query. */
  target: string
  host?: string
  /** A real token, verified with the issuer's real keys. */
  token?: string
  /** Claims taken as already verified. */
  claims?: Record<string, unknown>
  /** The request's Origin header: shows the CORS headers of the answer. */
  origin?: string
  /** With `origin`, an OPTIONS request is a CORS preflight asking for this method and these headers. */
  preflight?: { method: string; headers: string[] }
  /** With `token`: the request's DPoP proof, checked as the proxy checks it (the token then goes with the DPoP scheme). */
  dpop?: string
  /** With `token`: the client certificate (PEM) the request presents, for a certificate-bound token. */
  clientCertificate?: string
  /** With `claims`: what the request proves of a bound token (VerifiedClaims in src/auth/authenticate.ts). */
  sender?: Array<'dpop' | 'mtls'>
}

interface RouteFacts {
  /** The route's label in metrics and logs: its `name:`, else derived from methods, host and path. */
  name: string
  index: number
  path: string
  methods: string[] | null
  host: string | null
}

interface SkippedRoute extends RouteFacts {
  mismatch: Mismatch
}

type ClaimRule = { claim: string } & ClaimConditionDocument

interface IssuerFacts {
  name: string
  iss: string
  /** The audiences this token check accepts from the issuer (its own `audiences`, or the issuer's). */
  audiences: string[]
  /** Only when set in the policy. */
  iss_aliases?: string[]
  tenants?: string[] | 'any'
  audience_claim?: string
}

/** One token check. */
interface TokenCheck {
  issuers: IssuerFacts[]
  claims: ClaimRule[]
  scopes: string[]
  typ?: string[]
  require_claims?: string[]
  max_age?: string | number
}

type RequirementTree = TokenCheck | { any: RequirementTree[] } | { all: RequirementTree[] }

type Requirement =
  | { auth: 'none' }
  | ({
      auth: 'token'
      optional?: true
      /** Only when the route reads tokens from elsewhere than `Authorization: Bearer`. */
      token_sources?: Array<{ from: string; forwarded: boolean }>
      /** Sender-constrained tokens: each issuer's binding on this route, and what a request must bring. */
      binding?: Array<{ issuer: string; method: string; required: boolean }>
      dpop_proof?: Record<string, string>
      client_certificate?: string
    } & RequirementTree)

/** The facts `explain` prints; also its --json shape. */
export interface Explanation {
  request: { method: string; target: string; host: string | null }
  /** The normalized path; null when the path is refused (then `path_refused` says why). */
  path: string | null
  path_refused?: string
  /** Routes before the one that matched (all of them when none did), with why each did not. */
  skipped: SkippedRoute[]
  route: RouteFacts | null
  upstream: { name: string; url: string } | null
  requires: Requirement | null
  /** `mode: report`: the decision is the route's, but the request is forwarded whatever it is. */
  mode?: 'report'
  evaluated_with: 'token' | 'claims' | 'nothing'
  /** With --claims: the claims evaluated, iss and aud filled in from the route when not given. */
  claims?: Record<string, unknown>
  /** With --token: its decoded header and claims, as the token carries them (never its signature); or why it cannot be decoded. */
  token?: { header: Record<string, unknown>; claims: unknown } | { error: string }
  /** The route's decision; on a report route the request is forwarded even when it is deny. */
  decision: 'allow' | 'deny'
  status?: number
  reason?: string
  description?: string
  /**
   * The checks the token failed: where each looked, what it found, what it wanted (and how close
   * it came). The first decided; the others are every further check of the route's requirement
   * the token fails, so that one run shows all of them.
   */
  checks?: Array<FailedCheck & { note?: string }>
  /** On a gRPC route (grpc: true), the grpc-status a gRPC client is answered with for the denial. */
  grpc_status?: number
  issuer?: string
  /** How the token was sender-constrained, on a route that checks binding. */
  bound?: string
  identity_headers?: Record<string, string>
  authorization_forwarded?: boolean
  /** A CORS preflight the gateway answers itself: nothing is forwarded. */
  preflight?: true
  /** With --origin: the CORS headers the answer gets. */
  cors_headers?: Record<string, string>
}

/**
 * What the gateway would do with one request, and why. Throws PolicyError when the policy does
 * not load. The policy file is read once: the compiled policy decides, and the document it was
 * compiled from shows the routes as written (patterns, methods, claim conditions), which
 * compiled matchers do not keep.
 */
export async function explain(options: ExplainOptions): Promise<Explanation> {
  const source = readPolicyDraft(options.policyFile)
  const policy = compilePolicy(source, createLogger('silent'))
  try {
    return await explainLoaded(policy, source.document, options)
  } finally {
    // Compiling made each JWKS issuer an undici Agent; stopped, they let the process exit.
    for (const issuer of policy.issuers.values()) issuer.stop()
  }
}

/**
 * The same, against a loaded policy and the document it was compiled from (a running gateway's:
 * its redacted copy, whose routes and conditions are as written).
 */
export async function explainLoaded(policy: CompiledPolicy, document: PolicyDocument, question: Question): Promise<Explanation> {
  const { decision, claims } = await evaluate(policy, question)
  return explanationOf(policy, document, question, decision, claims)
}

/** What a route requires, in the words `explain` prints under "requires". */
export function requirementWords(policy: CompiledPolicy, route: Route, document: PolicyDocument): string[] {
  // No request: what a proof or certificate must contain is said in general.
  return requirementLines(requirementOf(policy, route, document.routes[route.index]!, { method: 'GET', target: '/' }))
}

/** What `explain` prints: the explanation as text, or as one JSON object. */
export function explainOutput(e: Explanation, json: boolean): string {
  return json ? `${JSON.stringify(e, null, 2)}\n` : renderExplanation(e)
}

/** The exit code: the route's decision, also on a report route (which forwards anyway), i.e. what enforcing would do. */
export function explainExitCode(e: Explanation): 0 | 1 {
  return e.decision === 'deny' ? 1 : 0
}

/** `jwtgate explain`'s arguments: the options and whether to print JSON, or what is wrong with them (a usage message). */
export function explainArguments(args: string[], env: Record<string, string | undefined>): { options: ExplainOptions; json: boolean } | string {
  const parsed = messageIfThrown(() =>
    parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        host: { type: 'string' },
        token: { type: 'string' },
        claims: { type: 'string' },
        json: { type: 'boolean' },
        origin: { type: 'string' },
        preflight: { type: 'string' },
        'preflight-headers': { type: 'string' },
        dpop: { type: 'string' },
        'client-cert': { type: 'string' },
        sender: { type: 'string' },
      },
    }),
  )
  if (typeof parsed === 'string') return parsed
  const { values, positionals } = parsed
  const policyFile = values.config ?? env.JWTGATE_CONFIG
  if (!policyFile) return 'explain needs -c policy.yaml'
  if (positionals.length !== 2) return 'explain needs a METHOD and a PATH, as in: jwtgate explain -c policy.yaml GET /api/orders'
  const method = positionals[0]!.toUpperCase()
  if (!/^[A-Z]+$/.test(method)) return `"${positionals[0]}" is not an HTTP method`
  if (values.token !== undefined && values.claims !== undefined) return 'give --token or --claims, not both'
  const claims = values.claims === undefined ? undefined : claimsArgument(values.claims)
  if (typeof claims === 'string') return claims
  // A token pasted with its scheme is still the token.
  const token = values.token?.replace(/^bearer\s+/i, '')
  if (values.preflight !== undefined && (method !== 'OPTIONS' || values.origin === undefined))
    return '--preflight METHOD describes an OPTIONS request with --origin'
  if (values['preflight-headers'] !== undefined && values.preflight === undefined) return '--preflight-headers goes with --preflight'
  if ((values.dpop !== undefined || values['client-cert'] !== undefined) && token === undefined) return '--dpop and --client-cert go with --token'
  if (values.sender !== undefined && claims === undefined) return '--sender goes with --claims'
  const sender = values.sender?.split(',').map((s) => s.trim())
  if (sender?.some((s) => s !== 'dpop' && s !== 'mtls')) return '--sender takes dpop, mtls or dpop,mtls'
  let clientCertificate: string | undefined
  if (values['client-cert'] !== undefined) {
    const read = messageIfThrown(() => readFileSync(values['client-cert']!, 'utf8'))
    if (read.startsWith('cannot') || !read.includes('-----BEGIN')) return `--client-cert needs a PEM certificate file: ${read.split('\n')[0]}`
    clientCertificate = read
  }
  const preflight =
    values.preflight === undefined
      ? undefined
      : {
          method: values.preflight.toUpperCase(),
          headers: (values['preflight-headers'] ?? '')
            .split(',')
            .map((h) => h.trim())
            .filter(Boolean),
        }
  return {
    options: {
      policyFile,
      method,
      target: positionals[1]!,
      host: values.host,
      token,
      claims,
      origin: values.origin,
      preflight,
      ...(values.dpop !== undefined ? { dpop: values.dpop } : {}),
      ...(clientCertificate ? { clientCertificate } : {}),
      ...(sender ? { sender: sender as Array<'dpop' | 'mtls'> } : {}),
    },
    json: values.json === true,
  }
}

function claimsArgument(text: string): Record<string, unknown> | string {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return `--claims is not valid JSON: ${(err as Error).message}`
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return '--claims must be a JSON object, as in \'{"sub":"alice","roles":["admin"]}\''
  return value as Record<string, unknown>
}

async function evaluate(policy: CompiledPolicy, options: Question): Promise<{ decision: Decision; claims?: Record<string, unknown> }> {
  const route = options.token !== undefined || options.claims ? await routeFor(policy, options.method, options.host, options.target) : undefined
  // No issuer is started: the token's own lookup fetches its issuer's keys (an unrelated IdP
  // that is unreachable from here costs nothing), and that fetch answers for the token's kid,
  // so a kid the set lacks is 401 unknown_kid. A fetch made before would put the token after
  // it, where the proxy answers 503 for a kid the IdP may have published since.
  const claims = options.claims && withRouteDefaults(options.claims, route)
  const decision: Decision = {}
  await decide(policy, options.method, options.host, options.target, credentialsOf(options, claims, route, policy), decision, preflightOf(options))
  return { decision, claims }
}

function preflightOf(options: Question): Preflight | undefined {
  if (!options.preflight || options.origin === undefined) return undefined
  return { origin: options.origin, method: options.preflight.method, headers: options.preflight.headers.join(',') }
}

/**
 * A --token goes where the route reads tokens first: `Authorization: Bearer` unless the route
 * says otherwise, `Authorization: DPoP` with --dpop. The request comes to the policy's listener
 * (https with listen.tls) at --host, with --client-cert's certificate.
 */
function credentialsOf(options: Question, claims: Record<string, unknown> | undefined, route: Route | undefined, policy: CompiledPolicy): Credentials {
  const { token, target } = options
  if (claims) return { claims, ...(options.sender ? { sender: options.sender } : {}) }
  // No token anywhere: what a request without a token gets.
  if (token === undefined) return { rawHeaders: [], url: target }
  const binding = { origin: originOf(options, policy), certificate: options.clientCertificate && certificateThumbprint(options.clientCertificate) }
  const request = { url: target, method: options.method, binding }
  if (options.dpop !== undefined) return { rawHeaders: ['authorization', `DPoP ${token}`, 'dpop', options.dpop], ...request }
  const source = route?.auth?.sources.all[0]
  switch (source?.kind) {
    case 'cookie':
      return { rawHeaders: ['cookie', `${source.name}=${token}`], ...request }
    case 'query':
      return { rawHeaders: [], ...request, url: `${target}${target.includes('?') ? '&' : '?'}${encodeURIComponent(source.name)}=${token}` }
    case 'header':
      return { rawHeaders: [source.name, `${source.prefix ? capitalized(source.prefix) : ''}${token}`], ...request }
    default:
      return { rawHeaders: ['authorization', `Bearer ${token}`], ...request }
  }
}

/** The scheme and authority a client would address: the listener's scheme, --host (localhost without one). */
function originOf(options: Question, policy: CompiledPolicy): string {
  return `${policy.listen.tls ? 'https' : 'http'}://${options.host ?? 'localhost'}`
}

function certificateThumbprint(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url')
}

function capitalized(text: string): string {
  return text[0]!.toUpperCase() + text.slice(1)
}

function explanationOf(
  policy: CompiledPolicy,
  document: PolicyDocument,
  options: Question,
  decision: Decision,
  claims: Record<string, unknown> | undefined,
): Explanation {
  const { route, path, denial } = decision
  const refused = denial?.reason === 'bad_path'
  return {
    request: { method: options.method, target: options.target, host: options.host ?? null },
    path: path ?? null,
    ...(refused ? { path_refused: denial.description } : {}),
    skipped: path === undefined ? [] : skippedRoutes(policy, document, options, path, route?.index ?? document.routes.length),
    route: route ? routeFacts(route, document.routes[route.index]!) : null,
    upstream:
      route && path !== undefined && !decision.preflight
        ? { name: route.upstream.name, url: upstreamUrl(route, path) + forwardedQuery(options.target, route.auth?.sources.queryNames ?? []) }
        : null,
    requires: route ? requirementOf(policy, route, document.routes[route.index]!, options) : null,
    ...(route?.report ? { mode: 'report' as const } : {}),
    evaluated_with: claims ? 'claims' : options.token !== undefined ? 'token' : 'nothing',
    ...(claims ? { claims } : {}),
    ...(options.token !== undefined ? { token: decodedToken(options.token) } : {}),
    ...outcome(decision),
    ...(options.origin !== undefined ? { cors_headers: corsHeadersOf(policy, decision, options.origin) } : {}),
  }
}

/** The CORS headers the proxy would add to its answer, by the proxy's own addCorsHeaders. */
function corsHeadersOf(policy: CompiledPolicy, decision: Decision, origin: string): Record<string, string> {
  const rule = decision.route ? decision.route.cors : policy.cors
  const sink = headerRecord()
  if (rule) addCorsHeaders(sink, rule, origin, decision.preflight === true, decision.preflight === true && decision.denial !== undefined)
  return sink.headers
}

function outcome(
  decision: Decision,
): Pick<
  Explanation,
  'decision' | 'status' | 'reason' | 'description' | 'grpc_status' | 'issuer' | 'identity_headers' | 'authorization_forwarded' | 'preflight'
> {
  const { route, identity } = decision
  if (decision.preflight && !decision.denial) return { decision: 'allow', status: 204, preflight: true }
  const denial = decision.denial ?? decision.reported
  const forwarded = {
    ...(identity ? { issuer: identity.issuer.name } : {}),
    ...(identity?.bound ? { bound: identity.bound } : {}),
    identity_headers: identityHeadersOf(decision),
    authorization_forwarded: route?.forwardToken ?? false,
  }
  if (denial)
    return {
      decision: 'deny',
      status: denial.status,
      reason: denial.reason,
      description: denial.description,
      ...checksOf(decision, denial),
      // A call on a gRPC route is answered with this status (src/http/grpc_status.ts).
      ...(route?.grpc ? { grpc_status: grpcStatusOf(denial) } : {}),
      ...(decision.reported ? forwarded : {}),
    }
  return { decision: 'allow', ...forwarded }
}

/** The denial's check, then every other check of the route's requirement a verified token fails. */
function checksOf(decision: Decision, denial: Denial): Pick<Explanation, 'checks'> {
  const failed: Denial[] = [denial]
  const requirement = decision.route?.auth?.requirement
  if (decision.refused && requirement) {
    const all: Denial[] = []
    requirement.check(decision.refused, Date.now(), all)
    for (const d of all) if (d.check && !failed.some((f) => f.check?.claim === d.check!.claim && f.check?.wanted === d.check!.wanted)) failed.push(d)
  }
  const checks = failed.flatMap((d) => (d.check ? [withNote(d.check)] : []))
  return checks.length ? { checks } : {}
}

const decode = createDecoder({ complete: true }) as (token: string) => { header: Record<string, unknown>; payload: unknown }

/** The token's header and claims as it carries them, never its signature: what the checks read. */
function decodedToken(token: string): NonNullable<Explanation['token']> {
  try {
    const { header, payload } = decode(token)
    return { header, claims: payload }
  } catch {
    return { error: 'not a well-formed JWT: it cannot be decoded' }
  }
}

/** The check, with a word on a near miss: a value that differs from an accepted one by a trailing slash, in case or by spaces. */
function withNote(check: FailedCheck): FailedCheck & { note?: string } {
  const found = typeof check.found === 'string' ? [check.found] : Array.isArray(check.found) ? check.found.filter((f) => typeof f === 'string') : []
  for (const f of found) {
    for (const a of check.accepted ?? []) {
      const how =
        f.replace(/\/+$/, '') === a.replace(/\/+$/, '')
          ? 'by a trailing slash'
          : f.toLowerCase() === a.toLowerCase()
            ? 'in case'
            : f.trim() === a.trim()
              ? 'by spaces at an end'
              : undefined
      if (how) return { ...check, note: `${JSON.stringify(f)} differs from the accepted ${JSON.stringify(a)} only ${how}` }
    }
  }
  return check
}

function skippedRoutes(policy: CompiledPolicy, document: PolicyDocument, options: Question, path: string, before: number): SkippedRoute[] {
  const host = hostFromHeader(options.host)
  const out: SkippedRoute[] = []
  const routes = policy.routes.values()
  for (let i = 0; i < before; i++) {
    const mismatch = policy.routes.mismatch(i, options.method, host, path)
    if (mismatch) out.push({ ...routeFacts(routes[i]!, document.routes[i]!), mismatch })
  }
  return out
}

function routeFacts(route: Route, spec: RouteDocument): RouteFacts {
  return { name: route.name, index: route.index, path: spec.path, methods: spec.methods ?? null, host: spec.host ?? null }
}

/** What a request must bring for a bound token on this route: what src/auth/binding.ts and dpop.ts check. */
function bindingFacts(
  policy: CompiledPolicy,
  route: Route,
  options: Question,
): Pick<Requirement & { auth: 'token' }, 'binding' | 'dpop_proof' | 'client_certificate'> {
  const binding = route.auth?.binding
  const env = policy.auth.binding
  if (!binding || !env) return {}
  const rules = [...binding.rules].map(([issuer, rule]) => ({ issuer: issuer.name, method: rule.method, required: rule.required }))
  const { dpop } = env
  const proof = {
    authorization: 'DPoP <token>',
    header: `exactly one DPoP header, at most ${dpop.maxProofBytes} bytes`,
    typ: 'dpop+jwt',
    alg: `one of ${dpop.algs}`,
    jwk: "the client's public key (no private members); its RFC 7638 thumbprint is the token's cnf.jkt",
    htm: options.method,
    htu: `${originOf(options, policy)}${splitTarget(options.target).path} (query and fragment ignored)`,
    iat: `within ${dpop.maxAgeMs / 1000}s of now`,
    jti: 'unique: a proof is accepted once',
    ath: options.token !== undefined ? accessTokenHash(options.token) : 'base64url SHA-256 of the access token',
    ...(dpop.nonces ? { nonce: 'the newest nonce the gateway sent in DPoP-Nonce' } : {}),
  }
  return {
    binding: rules,
    ...(binding.dpop ? { dpop_proof: proof } : {}),
    ...(rules.some((r) => r.method === 'mtls' || r.method === 'any')
      ? {
          client_certificate:
            "the certificate whose SHA-256 thumbprint is the token's cnf.x5t#S256, on the TLS connection or in a trusted proxy's client_certificate_header",
        }
      : {}),
  }
}

function requirementOf(policy: CompiledPolicy, route: Route, spec: RouteDocument, options: Question): Requirement {
  if (!route.auth || spec.auth === 'none') return { auth: 'none' }
  const sources = route.auth.sources.all
  const usual = sources.length === 1 && sources[0]!.kind === 'header' && sources[0]!.name === 'authorization' && sources[0]!.prefix === 'bearer '
  return {
    auth: 'token',
    ...(spec.auth.optional ? { optional: true as const } : {}),
    ...bindingFacts(policy, route, options),
    ...(usual ? {} : { token_sources: sources.map((s) => ({ from: s.what, forwarded: s.kind !== 'query' && route.forwardToken })) }),
    ...treeOf(policy, spec.auth),
  }
}

/** The requirement as written, with each issuer's iss and the audiences this check accepts. */
function treeOf(policy: CompiledPolicy, doc: RequirementDocument): RequirementTree {
  if (doc.any) return { any: doc.any.map((d) => treeOf(policy, d)) }
  if (doc.all) return { all: doc.all.map((d) => treeOf(policy, d)) }
  const issuers = (doc.issuers ?? []).map((name) => issuerFacts(policy.issuers.get(name)!, doc.audiences))
  return {
    issuers,
    claims: Object.entries(doc.claims ?? {}).map(([claim, condition]) => ({ claim, ...condition })),
    scopes: doc.scopes ?? [],
    ...(doc.typ !== undefined ? { typ: typeof doc.typ === 'string' ? [doc.typ] : doc.typ } : {}),
    ...(doc.require_claims ? { require_claims: doc.require_claims } : {}),
    ...(doc.max_age !== undefined ? { max_age: doc.max_age } : {}),
  }
}

function issuerFacts(i: Issuer, audiences: string[] | undefined): IssuerFacts {
  return {
    name: i.name,
    iss: i.issuer,
    audiences: audiences ?? [...i.audiences],
    ...(i.exactIss.length > 1 ? { iss_aliases: i.exactIss.slice(1) } : {}),
    ...(i.template ? { tenants: i.template.tenants ? [...i.template.tenants] : ('any' as const) } : {}),
    ...(i.audienceClaim !== 'aud' ? { audience_claim: i.audienceClaim } : {}),
  }
}

// ---- text output -------------------------------------------------------------------------

/** The explanation as lines a person reads. */
export function renderExplanation(e: Explanation): string {
  const out: string[] = []
  const put = (label: string, ...lines: string[]) =>
    lines.forEach((text, i) => {
      out.push(`${(i ? '' : label).padEnd(10)}${text}`)
    })

  put('request', `${e.request.method} ${e.request.target}${e.request.host ? `  (Host: ${e.request.host})` : '  (no Host header)'}`)
  if (e.path === null) {
    put('path', `refused: ${e.path_refused}`)
  } else {
    put('path', e.path + (e.path !== splitTarget(e.request.target).path ? `  (normalized from ${splitTarget(e.request.target).path})` : ''))
    if (e.skipped.length) put('skipped', ...e.skipped.map((s) => `${routeName(s)}  ${mismatchText(s, e)}`))
    put('route', e.route ? `${routeName(e.route)}  methods ${e.route.methods?.join(', ') ?? 'any'}, host ${e.route.host ?? 'any'}` : 'no route matches: 404')
  }
  if (e.upstream) put('upstream', `${e.upstream.name} → ${e.upstream.url}`)
  if (e.requires) put('requires', ...requirementLines(e.requires))
  if (e.mode) put('mode', 'report: the decision is logged and counted, and the request forwarded whatever it is')
  if (e.claims) put('claims', JSON.stringify(e.claims))
  if (e.token)
    put('token', ...('error' in e.token ? [e.token.error] : [`header ${JSON.stringify(e.token.header)}`, `claims ${JSON.stringify(e.token.claims)}`]))
  put('decision', ...decisionLines(e))
  if (e.bound) put('binding', e.bound === 'none' ? 'the token is not sender-constrained' : `the token is sender-constrained: ${e.bound}`)
  if (e.cors_headers)
    put('cors', ...(Object.keys(e.cors_headers).length ? Object.entries(e.cors_headers).map(([n, v]) => `${n}: ${v}`) : ['no CORS rule applies']))
  return out.join('\n') + '\n'
}

/** The name, and where the route is in the file: `orders (routes[2] /api/**)`, `/api/** (routes[2])`. */
function routeName(r: RouteFacts): string {
  return r.name.includes('/') ? `${r.name} (routes[${r.index}])` : `${r.name} (routes[${r.index}] ${r.path})`
}

function mismatchText(s: SkippedRoute, e: Explanation): string {
  switch (s.mismatch) {
    case 'path':
      return 'path does not match'
    case 'method':
      return `method ${e.request.method} is not one of ${s.methods!.join(', ')}`
    case 'host':
      return e.request.host ? `host ${e.request.host} does not match ${s.host}` : `only for host ${s.host} (give --host)`
  }
}

function requirementLines(r: Requirement): string[] {
  if (r.auth === 'none') return ['nothing: auth none']
  const tree = [
    ...treeLines(r),
    ...(r.token_sources ? [`read from the ${r.token_sources.map((s) => s.from).join(' or the ')}`] : []),
    ...(r.binding ? r.binding.map((b) => `binding ${b.method} for ${b.issuer}${b.required ? ' (required: unbound tokens refused)' : ''}`) : []),
    ...(r.dpop_proof ? ['a DPoP-bound token comes with a DPoP proof:', ...Object.entries(r.dpop_proof).map(([k, v]) => `  ${k}: ${v}`)] : []),
    ...(r.client_certificate ? [`a certificate-bound token comes with ${r.client_certificate}`] : []),
  ]
  return r.optional ? ['no token, or a token that meets:', ...tree.map((l) => `  ${l}`)] : tree
}

function treeLines(r: RequirementTree): string[] {
  if ('any' in r || 'all' in r) {
    const [word, parts] = 'any' in r ? ['any', r.any] : ['all', r.all]
    return [`${word} of:`, ...parts.flatMap((p, i) => treeLines(p).map((l, j) => (j ? '     ' : `  ${i + 1}. `) + l))]
  }
  const from = r.issuers.map((i) => `${i.name} (${issText(i)}, ${i.audience_claim ?? 'aud'} ${i.audiences.join(' or ')})`).join(' or ')
  return [
    `a valid token from ${from}`,
    ...(r.typ ? [`typ ${r.typ.join(' or ')}`] : []),
    ...(r.require_claims ? [`must carry ${r.require_claims.join(', ')}`] : []),
    ...(r.max_age !== undefined ? [`issued at most ${typeof r.max_age === 'number' ? `${r.max_age}s` : r.max_age} ago (max_age)`] : []),
    ...r.claims.map((c) => `claim ${c.claim} ${conditionWords(c)}`),
    ...(r.scopes.length ? [`scopes ${r.scopes.join(' ')}`] : []),
  ]
}

function issText(i: IssuerFacts): string {
  if (i.tenants) return `iss ${i.iss}, ${i.tenants === 'any' ? 'any tenant' : `tenants ${i.tenants.join(', ')}`}`
  return `iss ${[i.iss, ...(i.iss_aliases ?? [])].join(' or ')}`
}

function decisionLines(e: Explanation): string[] {
  const basis = basisText(e)
  if (e.preflight) return ['ALLOW 204: a CORS preflight, answered by the gateway without a token; nothing is forwarded']
  const forwarded = [...(e.identity_headers && e.requires?.auth === 'token' ? headerLines(e.identity_headers, e) : []), ...forwardingLines(e)]
  if (e.decision === 'deny') {
    const verdict = [
      `DENY ${e.status} ${e.reason}: ${e.description}`,
      ...(e.grpc_status !== undefined ? [`a gRPC call gets grpc-status ${e.grpc_status}, grpc-message ${e.reason}`] : []),
      ...(e.checks ?? []).flatMap(checkLines),
      ...(basis ? [basis] : []),
    ]
    return e.mode ? [...verdict, 'not enforced (mode report): forwarded anyway', ...forwarded] : verdict
  }
  return [`ALLOW${e.issuer ? ` (token from ${e.issuer})` : ''}${basis ? `, ${basis}` : ''}`, ...forwarded]
}

/** The failed check, and the near miss if any. */
function checkLines(check: NonNullable<Explanation['checks']>[number]): string[] {
  return [checkText(check), ...(check.note ? [check.note] : [])]
}

function forwardingLines(e: Explanation): string[] {
  const sources = e.requires?.auth === 'token' ? e.requires.token_sources : undefined
  if (!sources) return [`Authorization header ${e.authorization_forwarded ? 'forwarded' : 'removed'}`]
  return sources.map((s) => `${s.from} ${s.forwarded ? 'forwarded' : 'removed'}`)
}

function basisText(e: Explanation): string {
  switch (e.evaluated_with) {
    case 'claims':
      return `with the claims given, taken as verified${e.requires && checksTyp(e.requires) ? ' (typ, a header, is not checked)' : ''}`
    case 'token':
      return "with the token given, verified against the issuer's keys"
    case 'nothing':
      return e.requires?.auth === 'token' ? 'without a token (give --token or --claims to check one)' : ''
  }
}

function checksTyp(r: Requirement | RequirementTree): boolean {
  if ('any' in r) return r.any.some(checksTyp)
  if ('all' in r) return r.all.some(checksTyp)
  return 'typ' in r && r.typ !== undefined
}

function headerLines(headers: Record<string, string>, e: Explanation): string[] {
  const entries = Object.entries(headers)
  if (!entries.length) return [e.issuer ? 'sets no identity headers (the token has none of their claims)' : 'sets no identity headers (no token)']
  return entries.map(([name, value]) => `sets ${name}: ${value}`)
}

/** parseArgs throws for an unknown option; the CLI shows its message as a usage line. */
function messageIfThrown<T>(parse: () => T): T | string {
  try {
    return parse()
  } catch (err) {
    return (err as Error).message
  }
}
