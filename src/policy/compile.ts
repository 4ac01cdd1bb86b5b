// From a schema-valid policy document to immutable runtime objects: routes with precompiled
// matchers, issuers with prepared verifiers and key sources, upstreams with parsed URLs. The
// request path reads only these; it never sees YAML or the raw document.
import { createHash } from 'node:crypto'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import { parseClaimPath } from '../auth/claims.js'
import type { AuthContext, AuthRule } from '../auth/authenticate.js'
import { compileRequirement } from '../auth/requirement.js'
import { TokenCache } from '../auth/token_cache.js'
import { unsafeUrl } from '../auth/discovery.js'
import { jwksIssuer, secretIssuer, type Issuer, type IssuerSettings } from '../auth/issuer.js'
import { IssuerSet } from '../auth/issuer_set.js'
import { allowedIssOf, parseIssuerTemplate, tenantIn } from '../auth/issuer_template.js'
import { DEFAULT_TOKEN_SOURCES, sourcePlace, tokenSources, type SourcePlace, type TokenSource, type TokenSourceSpec, type TokenSources } from '../auth/token_sources.js'
import { compileCors, type CorsRule } from '../proxy/cors.js'
import { compileHttpsRule, type HttpsRule } from '../proxy/https_only.js'
import { headerStripper, type IdentityHeader, type IdentityOutput } from '../proxy/identity_headers.js'
import { compileRevocation, type CompiledRevocation } from '../revocation/config.js'
import { compileHostPattern, compilePathPattern, RouteTable, type RouteCandidate } from '../routing/route_table.js'
import { durationMs } from './duration.js'
import { filesReadAtLoad, readSecretBesidePolicy } from './policy_files.js'
import { lintIssuers } from './lint.js'
import { label, readPolicySource, type Env, type PolicySource } from './load.js'
import { PolicyError, type DocPath } from './problems.js'
import { DEFAULT_IDENTITY_PREFIXES, isOwnedHeader, ownedHeaderUnderPrefix, PATH_AND_METHOD_OVERRIDES } from '../http/owned_headers.js'
import { HMAC_ALGORITHMS, type IdentityHeaderDocument, type IssuerDocument, type RouteDocument, type UpstreamDocument } from './schema.js'
import { compileListenTls, compileUpstreamTls, type ListenTls, type UpstreamTls } from './tls_files.js'

export interface Upstream {
  name: string
  /** scheme://host:port */
  origin: string
  /** The URL's own path without a trailing slash, prefixed to every forwarded path. */
  basePath: string
  timeoutMs: number
  /** The most connections open to it at once. */
  connections: number
  /** For https: a private CA and a client certificate; null for the defaults (system CAs, no client certificate). */
  tls: UpstreamTls | null
  /**
   * Everything the connection pool is built from (origin, connections, TLS material): a reload
   * keeps the pool of an upstream whose key is unchanged.
   */
  poolKey: string
}

export interface Route {
  index: number
  /** `routes[2] /api/**`, for logs. */
  name: string
  upstream: Upstream
  /** null when the route is `auth: none`. */
  auth: AuthRule | null
  /** `mode: report`: the decision is logged and counted, and the request forwarded whatever it is. */
  report: boolean
  identity: IdentityOutput
  forwardToken: boolean
  /** The route's CORS rule (its own, else the global one); null when CORS is off for it. */
  cors: CorsRule | null
  /** `websocket: true`: upgrades are checked, then tunnelled to the upstream. */
  websocket: boolean
  /** The largest request body; 0 for no limit. */
  maxBodyBytes: number
}

export interface CompiledPolicy {
  file: string
  /** Absolute paths of the other files read at load (secret files, certificates, keys): a change to one is a policy change. */
  files: readonly string[]
  /** sha256 of the policy text, to tell one loaded policy from another. */
  hash: string
  /** `tls`: the certificate and key read at load; null for plain HTTP. */
  listen: { host: string; port: number; tls: ListenTls | null }
  /** Node's limit on a request's header section (larger gets 431); applies from the next start. */
  maxHeaderBytes: number
  /** The global CORS rule, for responses that match no route; null without `cors:`. */
  cors: CorsRule | null
  /** `require_https` and `trusted_proxies`. */
  https: HttpsRule
  /** The admin listener (health, readiness, metrics, config); null when turned off. */
  admin: { host: string; port: number } | null
  shutdown: { drainDelayMs: number; timeoutMs: number }
  /** Processes serving the proxy listener (`workers`, `auto` resolved); applies from the next start. */
  workers: number
  /** Issuers whose keys must be loaded before /readyz says ready. */
  requiredForReadiness: readonly Issuer[]
  /** The policy as loaded, secrets redacted: what GET /config shows. */
  redacted: unknown
  logLevel: string
  /** One access-log line per request (`log.access`). */
  accessLog: boolean
  routes: RouteTable<Route>
  issuers: ReadonlyMap<string, Issuer>
  upstreams: ReadonlyMap<string, Upstream>
  stripIdentityHeaders: (headers: Record<string, unknown>) => void
  rejectPathParameters: boolean
  /** Token limits and the verified-token cache; one cache per loaded policy. */
  auth: AuthContext
  /** The revocation store (also at auth.revocation) and the admin API token; null without `revocation:`. */
  revocation: CompiledRevocation | null
}

const DEFAULT_MAX_TOKEN_BYTES = 16_384
// Node's own default is 16 KiB for the whole header section, which a 16 KiB token alone fills.
const DEFAULT_MAX_HEADER_BYTES = 32_768
const DEFAULT_UPSTREAM_CONNECTIONS = 128
const MAX_WORKERS = 64
// About 1 KiB each: 10 MiB at most, and enough for the active tokens of a busy service.
const DEFAULT_TOKEN_CACHE_ENTRIES = 10_000
// Far above a user id or a few roles, well below Node's 16 KiB for a whole header section.
const DEFAULT_IDENTITY_HEADER_MAX_BYTES = 4096

/** Reads, checks and compiles a policy file; throws PolicyError listing every problem. */
export function loadPolicy(policyFile: string, log: Logger, env?: Env, previous?: CompiledPolicy): CompiledPolicy {
  return compilePolicy(readPolicySource(policyFile, env), log, previous)
}

// What each JWKS issuer was built from, so a reload can keep an unchanged issuer (and its warm
// key set) instead of fetching its keys again.
const builtFrom = new WeakMap<Issuer, string>()

/**
 * Compiles a checked document. With `previous` (a reload), issuers whose settings did not change
 * are kept as they are, and so are their caches; the token cache too when its size is the same.
 */
export function compilePolicy(source: PolicySource, log: Logger, previous?: CompiledPolicy): CompiledPolicy {
  const doc = source.document
  const problems = source.problems
  const report = (at: DocPath, message: string) => problems.add(at, message)

  const upstreams = new Map<string, Upstream>()
  const poolKeyByOrigin = new Map<string, [string, string]>()
  for (const [name, u] of Object.entries(doc.upstreams)) {
    const upstream = compileUpstream(name, u, source.file, report)
    if (!upstream) continue
    upstreams.set(name, upstream)
    // Connections are pooled per origin (undici dispatches by origin), so one origin has one
    // set of connection settings.
    const same = poolKeyByOrigin.get(upstream.origin)
    if (same && same[1] !== upstream.poolKey) {
      report(['upstreams', name], `upstreams.${same[0]} has the same origin (${upstream.origin}) with other connections or tls settings; give both the same`)
    }
    poolKeyByOrigin.set(upstream.origin, [name, upstream.poolKey])
  }

  const listenTls = compileListenTls(doc.listen.tls, source.file, report)
  const maxHeaderBytes = doc.limits?.max_header_bytes ?? DEFAULT_MAX_HEADER_BYTES
  const maxTokenBytes = doc.max_token_bytes ?? DEFAULT_MAX_TOKEN_BYTES
  if (maxTokenBytes >= maxHeaderBytes) {
    report([doc.max_token_bytes !== undefined ? 'max_token_bytes' : 'limits'], `max_token_bytes (${maxTokenBytes}) must be less than limits.max_header_bytes (${maxHeaderBytes}): the token is part of the header section`)
  }
  const cors = doc.cors ? compileCors(doc.cors, ['cors'], report) ?? null : null
  const https = compileHttpsRule(doc.require_https, doc.trusted_proxies, report)

  const issuers = new Map<string, Issuer>()
  const issuerNameByIss = new Map<string, string>()
  for (const [name, spec] of Object.entries(doc.issuers ?? {})) {
    const at: DocPath = ['issuers', name]
    ;[spec.issuer, ...(spec.issuer_aliases ?? [])].forEach((iss, i) => {
      const sameIss = issuerNameByIss.get(iss)
      if (sameIss) report(i === 0 ? [...at, 'issuer'] : [...at, 'issuer_aliases', i - 1], `issuer "${iss}" is already configured as issuers.${sameIss}; one iss value must map to one issuer`)
      issuerNameByIss.set(iss, name)
    })
    const kept = previous?.issuers.get(name)
    if (kept && isRemote(spec) && builtFrom.get(kept) === JSON.stringify(spec)) {
      issuers.set(name, kept)
      continue
    }
    const issuer = compileIssuer(name, spec, source.file, log, (where, m) => report([...at, ...where], m))
    if (issuer) {
      issuers.set(name, issuer)
      builtFrom.set(issuer, JSON.stringify(spec))
    }
  }

  reportTemplateOverlaps(issuers, report)

  // Kept across reloads when its settings are unchanged, like an unchanged issuer.
  const revocation = doc.revocation ? compileRevocation(doc.revocation, source.file, log, report, previous?.revocation) : null

  // The memory and file backends remember used one-time tokens in each process: with several
  // workers a token could be used once per worker.
  if (doc.workers !== undefined && doc.workers !== 1 && doc.revocation && doc.revocation.backend !== 'redis') {
    const index = doc.routes.findIndex((r) => r.replay_protection)
    if (index >= 0) report(['routes', index, 'replay_protection'], `replay_protection with more than one worker needs revocation.backend: redis; the ${doc.revocation.backend} backend remembers used tokens in each worker process`)
  }

  const stripPrefixes = doc.strip_header_prefixes ?? DEFAULT_IDENTITY_PREFIXES
  stripPrefixes.forEach((prefix, i) => {
    const owned = ownedHeaderUnderPrefix(prefix)
    if (owned) report(['strip_header_prefixes', i], `prefix "${prefix}" would strip ${owned}, which the gateway or the protocol needs`)
  })

  const defaultIdentity = compileIdentityHeaders(doc.identity_headers ?? {}, ['identity_headers'], report)
  const defaultPayloadHeader = doc.forward_payload_header === undefined ? null : payloadHeader(doc.forward_payload_header, defaultIdentity, ['forward_payload_header'], report)
  const identityMaxBytes = doc.identity_header_max_bytes ?? DEFAULT_IDENTITY_HEADER_MAX_BYTES
  const candidates: RouteCandidate<Route>[] = []
  doc.routes.forEach((spec, index) => {
    const candidate = compileRoute(spec, index, {
      upstreams, issuers, defaultIdentity, defaultPayloadHeader, identityMaxBytes, revocation: doc.revocation !== undefined, cors, maxBodyBytes: doc.limits?.max_body_bytes ?? 0, report,
    })
    if (candidate) candidates.push(candidate)
  })

  let routes: RouteTable<Route> | undefined
  if (candidates.length === doc.routes.length) {
    routes = new RouteTable(candidates)
    for (const { index, by } of routes.shadowedBy()) {
      report(['routes', index, 'path'], `route is unreachable: routes[${by}] (${doc.routes[by]!.path}) matches every request it would`)
    }
  }

  if (problems.list.length || !routes || listenTls === undefined) {
    for (const issuer of issuers.values()) if (previous?.issuers.get(issuer.name) !== issuer) issuer.stop()
    throw new PolicyError(problems.list)
  }
  // `jwtgate validate` prints these as file:line:col warnings; a running gateway logs them.
  for (const warning of lintIssuers(doc.issuers)) log.warn({ issuer: warning.issuer }, warning.message)
  const cacheEntries = doc.token_cache?.max_entries ?? DEFAULT_TOKEN_CACHE_ENTRIES
  // A token is accepted until exp + its issuer's skew, so a revocation is kept that much longer.
  if (revocation) revocation.store.marginMs = Math.max(0, ...[...issuers.values()].map((i) => i.clockSkewMs))

  return Object.freeze({
    file: source.file,
    files: filesReadAtLoad(source.file, doc),
    hash: createHash('sha256').update(source.text).digest('hex'),
    listen: { host: doc.listen.host ?? '0.0.0.0', port: doc.listen.port, tls: listenTls },
    maxHeaderBytes,
    cors,
    https,
    // Loopback by default: metrics and config are for the pod, not the network.
    admin: doc.admin === false ? null : { host: doc.admin?.host ?? '127.0.0.1', port: doc.admin?.port ?? 9901 },
    shutdown: { drainDelayMs: durationMs(doc.shutdown?.drain_delay ?? '5s'), timeoutMs: durationMs(doc.shutdown?.timeout ?? '30s') },
    workers: doc.workers === 'auto' ? Math.min(MAX_WORKERS, availableParallelism()) : doc.workers ?? 1,
    requiredForReadiness: Object.entries(doc.issuers ?? {}).filter(([, spec]) => isRemote(spec) && !spec.optional_at_startup).map(([name]) => issuers.get(name)!),
    redacted: redact(doc),
    logLevel: doc.log?.level ?? 'info',
    accessLog: doc.log?.access ?? true,
    routes,
    issuers,
    upstreams,
    stripIdentityHeaders: headerStripper(strippedHeaderNames(doc), stripPrefixes) as CompiledPolicy['stripIdentityHeaders'],
    rejectPathParameters: doc.reject_path_parameters ?? true,
    auth: {
      maxTokenBytes,
      // Entries name their issuer object: a kept issuer keeps its tokens valid, a replaced one
      // makes its entries unusable on every route, so carrying the cache over is safe.
      tokens: previous?.auth.tokens.maxEntries === cacheEntries ? previous.auth.tokens : new TokenCache(cacheEntries),
      revocation: revocation?.store ?? null,
    },
    revocation: revocation ?? null,
  })
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text)
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== ''
  } catch {
    return false
  }
}

/** A deep copy with every secret replaced, for GET /config. */
function redact(doc: PolicySource['document']): unknown {
  return JSON.parse(JSON.stringify(doc, (key, value: unknown) => {
    if (key === 'secret' || key === 'admin_token') return '[redacted]'
    // A redis URL may carry a password.
    if (key === 'url' && typeof value === 'string' && /^rediss?:/i.test(value)) return value.replace(/\/\/([^@/]*)@/, '//[redacted]@')
    return value
  }))
}

function compileUpstream(name: string, spec: UpstreamDocument, policyFile: string, report: (at: DocPath, m: string) => void): Upstream | undefined {
  const at: DocPath = ['upstreams', name]
  if (!isHttpUrl(spec.url)) {
    report([...at, 'url'], `upstream url ${JSON.stringify(spec.url)} is not an http(s) URL`)
    return undefined
  }
  const url = new URL(spec.url)
  if (url.username || url.password || url.search || url.hash) {
    report([...at, 'url'], 'upstream url must not carry credentials, a query or a fragment')
    return undefined
  }
  const tls = compileUpstreamTls(spec.tls, url.protocol === 'https:', [...at, 'tls'], policyFile, report)
  if (tls === undefined) return undefined
  const connections = spec.connections ?? DEFAULT_UPSTREAM_CONNECTIONS
  const hash = createHash('sha256').update(`${url.origin}\n${connections}`)
  for (const pem of [tls?.ca, tls?.cert, tls?.key]) hash.update('\n').update(pem ?? '')
  return {
    name,
    origin: url.origin,
    basePath: url.pathname.replace(/\/+$/, ''),
    timeoutMs: durationMs(spec.timeout ?? '30s'),
    connections,
    tls,
    poolKey: hash.digest('hex'),
  }
}

/** Whether an issuer's keys come over the network (a key set, directly or through discovery). */
function isRemote(spec: IssuerDocument): boolean {
  return spec.jwks_uri !== undefined || spec.discovery === true
}

function compileIssuer(name: string, spec: IssuerDocument, policyFile: string, log: Logger, report: (at: DocPath, m: string) => void): Issuer | undefined {
  const sources = (['jwks_uri', 'discovery', 'secret', 'secret_file'] as const).filter((k) => spec[k] !== undefined && spec[k] !== false)
  if (sources.length !== 1) {
    report([], `issuer needs exactly one key source: jwks_uri, discovery, secret or secret_file${sources.length ? ` (found ${sources.join(', ')})` : ''}`)
    return undefined
  }
  const template = parseIssuerTemplate(spec.issuer, spec.tenants)
  if (typeof template === 'string') {
    report([spec.tenants && !spec.issuer.includes('{tid}') ? 'tenants' : 'issuer'], template)
    return undefined
  }
  if (template && spec.issuer_aliases) {
    report(['issuer_aliases'], 'issuer_aliases cannot go with a multi-tenant issuer ({tid} in issuer)')
    return undefined
  }
  if (!checkTokenSources(spec.token_sources, (i, m) => report(['token_sources', i], m))) return undefined
  const hmac = spec.algorithms.filter((a) => (HMAC_ALGORITHMS as readonly string[]).includes(a))
  const exactIss = template ? [] : [spec.issuer, ...(spec.issuer_aliases ?? [])]
  const settings: IssuerSettings = {
    name,
    issuer: spec.issuer,
    exactIss,
    template,
    allowedIss: template ? allowedIssOf(template) : exactIss.length > 1 ? exactIss : spec.issuer,
    audiences: spec.audiences,
    audienceClaim: spec.audience_claim ?? 'aud',
    algorithms: spec.algorithms,
    clockSkewMs: durationMs(spec.clock_skew ?? '30s'),
    requireExp: spec.require_exp ?? true,
    tokenSources: spec.token_sources ?? DEFAULT_TOKEN_SOURCES,
  }
  if (isRemote(spec)) {
    // A key set is public; an HMAC algorithm over it would let anyone holding it sign.
    if (hmac.length) {
      report(['algorithms'], `${hmac.join(', ')} cannot be used with a ${sources[0]}; HMAC issuers take a secret`)
      return undefined
    }
    const uri = spec.jwks_uri !== undefined ? spec.jwks_uri : discoverySource(spec, template !== undefined, (m) => report(['issuer'], m))
    if (uri === undefined) return undefined
    if (typeof uri === 'string' && !isHttpUrl(uri)) {
      report(['jwks_uri'], `jwks_uri ${JSON.stringify(uri)} is not an http(s) URL`)
      return undefined
    }
    const jwks = {
      uri,
      timeoutMs: durationMs(spec.jwks?.timeout ?? '5s'),
      cooldownMs: durationMs(spec.jwks?.cooldown ?? '30s'),
      minAgeMs: durationMs(spec.jwks?.min_age ?? '30s'),
      maxAgeMs: durationMs(spec.jwks?.max_age ?? '10m'),
    }
    if (jwks.timeoutMs <= 0) {
      report(['jwks', 'timeout'], 'jwks.timeout must be more than 0')
      return undefined
    }
    if (jwks.minAgeMs > jwks.maxAgeMs) {
      report(['jwks', 'min_age'], `jwks.min_age (${jwks.minAgeMs} ms) is more than jwks.max_age (${jwks.maxAgeMs} ms)`)
      return undefined
    }
    return jwksIssuer(settings, jwks, log)
  }
  if (hmac.length !== spec.algorithms.length) {
    report(['algorithms'], 'an issuer with a shared secret accepts only HS256, HS384 or HS512')
    return undefined
  }
  const text = spec.secret_file !== undefined ? readSecretBesidePolicy(policyFile, spec.secret_file, 'secret_file') : spec.secret!
  if (typeof text !== 'string') {
    report(['secret_file'], text.problem)
    return undefined
  }
  const secret = Buffer.from(text)
  // RFC 7518 §3.2: the key must be at least as long as the hash output.
  const needed = Math.max(...hmac.map((a) => Number(a.slice(2)) / 8))
  if (secret.length < needed) {
    report([spec.secret_file !== undefined ? 'secret_file' : 'secret'], `the secret must be at least ${needed} bytes for ${hmac.join(', ')} (RFC 7518 §3.2); it has ${secret.length}`)
    return undefined
  }
  return secretIssuer(settings, secret)
}

/**
 * `discovery: true`: the issuer is where its metadata lives (OIDC Discovery §4), so it must be
 * one exact https URL (http on loopback) without query or fragment.
 */
function discoverySource(spec: IssuerDocument, isTemplate: boolean, report: (m: string) => void): { discover: string } | undefined {
  if (isTemplate) {
    report('discovery needs one exact issuer; give a multi-tenant issuer its jwks_uri')
    return undefined
  }
  const why = unsafeUrl(spec.issuer)
  if (why) {
    report(`discovery reads {issuer}/.well-known/openid-configuration, but the issuer ${why}`)
    return undefined
  }
  const url = new URL(spec.issuer)
  if (url.search || url.hash || spec.issuer.includes('?') || spec.issuer.includes('#')) {
    report('discovery needs an issuer URL without a query or fragment (OIDC Discovery §4)')
    return undefined
  }
  return { discover: spec.issuer }
}

/** Checks an issuer's token_sources; false when one cannot be used (each reported). */
function checkTokenSources(specs: readonly TokenSourceSpec[] | undefined, report: (index: number, m: string) => void): boolean {
  let ok = true
  const seen = new Set<string>()
  specs?.forEach((spec, i) => {
    const place = sourcePlace(spec)
    if (typeof place === 'string') {
      report(i, place)
      ok = false
    } else if (seen.has(place.key)) {
      report(i, `the ${place.what} is already a token source`)
      ok = false
    }
    if (typeof place !== 'string') seen.add(place.key)
  })
  return ok
}

/** An exact iss of one issuer that a multi-tenant issuer also matches would make the choice a guess. */
function reportTemplateOverlaps(issuers: ReadonlyMap<string, Issuer>, report: (at: DocPath, m: string) => void): void {
  for (const multi of issuers.values()) {
    if (!multi.template) continue
    for (const other of issuers.values()) {
      other.exactIss.forEach((iss, i) => {
        if (tenantIn(multi.template!, iss) === undefined) return
        report(['issuers', other.name, i === 0 ? 'issuer' : 'issuer_aliases', ...(i === 0 ? [] : [i - 1])],
          `issuer "${iss}" is also matched by issuers.${multi.name} (${multi.issuer}); one iss value must map to one issuer`)
      })
    }
  }
}

function compileIdentityHeaders(spec: Record<string, IdentityHeaderDocument>, at: DocPath, report: (at: DocPath, m: string) => void): IdentityHeader[] {
  const out: IdentityHeader[] = []
  for (const [header, value] of Object.entries(spec)) {
    const name = header.toLowerCase()
    // x_forwarded_for is X-Forwarded-For to CGI-style back ends: both spellings are checked.
    if (isOwnedHeader(name)) {
      report([...at, header], `${header} cannot carry a claim: the gateway or the protocol owns it`)
      continue
    }
    const claim = typeof value === 'string' ? value : value.claim
    try {
      const encoding = typeof value === 'object' && value.json ? { json: true as const } : { json: false as const, join: (typeof value === 'object' && value.join) || ',' }
      out.push({ name, claim: parseClaimPath(claim), encoding })
    } catch (err) {
      report([...at, header], (err as Error).message)
    }
  }
  return out
}

/** `forward_payload_header`'s name, checked like an identity header's; null after reporting a problem. */
function payloadHeader(name: string, identity: readonly IdentityHeader[], at: DocPath, report: (at: DocPath, m: string) => void): string | null {
  const lower = name.toLowerCase()
  if (isOwnedHeader(lower)) {
    report(at, `${name} cannot carry the token payload: the gateway or the protocol owns it`)
    return null
  }
  if (identity.some((h) => h.name.replaceAll('_', '-') === lower.replaceAll('_', '-'))) {
    report(at, `${name} is also an identity header; give the payload a header of its own`)
    return null
  }
  return lower
}

/**
 * Every header the client may not send on: every header name the gateway may write as identity,
 * on any route (so that no route, whatever it sets itself, passes a client's copy through), and
 * the path/method overrides (stripped with the identity headers, so their underscore spellings go too).
 */
function strippedHeaderNames(doc: PolicySource['document']): string[] {
  const names = [...Object.keys(doc.identity_headers ?? {}), ...PATH_AND_METHOD_OVERRIDES]
  if (doc.forward_payload_header) names.push(doc.forward_payload_header)
  for (const route of doc.routes) {
    names.push(...Object.keys(route.identity_headers ?? {}))
    if (route.forward_payload_header) names.push(route.forward_payload_header)
  }
  return names
}

interface RouteContext {
  upstreams: ReadonlyMap<string, Upstream>
  issuers: ReadonlyMap<string, Issuer>
  defaultIdentity: readonly IdentityHeader[]
  defaultPayloadHeader: string | null
  identityMaxBytes: number
  /** Whether the policy has a revocation: section (replay protection needs its backend). */
  revocation: boolean
  /** The global CORS rule, which routes without their own `cors` use. */
  cors: CorsRule | null
  /** `limits.max_body_bytes`, for routes without their own. */
  maxBodyBytes: number
  report: (at: DocPath, m: string) => void
}

function compileRoute(spec: RouteDocument, index: number, ctx: RouteContext): RouteCandidate<Route> | undefined {
  const at: DocPath = ['routes', index]
  let ok = true
  const fail = (where: DocPath, m: string) => { ctx.report([...at, ...where], m); ok = false }

  let pathPattern
  try {
    pathPattern = compilePathPattern(spec.path)
  } catch (err) {
    fail(['path'], (err as Error).message)
  }
  let host = null
  if (spec.host !== undefined) {
    try {
      host = compileHostPattern(spec.host)
    } catch (err) {
      fail(['host'], (err as Error).message)
    }
  }
  const upstream = ctx.upstreams.get(spec.upstream)
  if (!upstream) fail(['upstream'], `unknown upstream "${spec.upstream}"${known(ctx.upstreams)}`)

  let auth: AuthRule | null = null
  if (spec.auth !== 'none') {
    const requirement = compileRequirement(spec.auth, [...at, 'auth'], ctx)
    // Sources are read for every issuer the requirement accepts somewhere in its tree.
    const sources = compileTokenSources(spec.token_sources, requirement?.issuers ?? [], fail)
    if (requirement && sources) {
      auth = {
        issuers: new IssuerSet(requirement.issuers), sources, requirement,
        ...(spec.auth.optional ? { optional: true } : {}), ...(spec.replay_protection ? { replayProtection: true } : {}),
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
  const identity = routeIdentity(spec, at, ctx)
  // A WebSocket handshake is a GET; the route could never see one.
  if (spec.websocket && spec.methods && !spec.methods.includes('GET')) fail(['websocket'], 'websocket: true needs GET in methods: a WebSocket handshake is a GET request')
  let cors = ctx.cors
  if (spec.cors === false) cors = null
  else if (spec.cors) {
    cors = compileCors(spec.cors, [...at, 'cors'], ctx.report) ?? null
    if (!cors) ok = false
  }
  if (!ok || !pathPattern || !upstream || !identity) return undefined
  const route: Route = {
    index,
    name: `${label(at)} ${spec.path}`,
    upstream,
    auth,
    report: spec.mode === 'report',
    identity,
    forwardToken: spec.forward_token ?? true,
    cors,
    websocket: spec.websocket ?? false,
    maxBodyBytes: spec.max_body_bytes ?? ctx.maxBodyBytes,
  }
  return { path: pathPattern, host, methods: spec.methods ? new Set(spec.methods) : null, value: route }
}

/** The policy's identity headers with the route's own added or overriding, and its payload header. */
function routeIdentity(spec: RouteDocument, at: DocPath, ctx: RouteContext): IdentityOutput | undefined {
  let ok = true
  let headers = ctx.defaultIdentity
  if (spec.identity_headers) {
    const own = compileIdentityHeaders(spec.identity_headers, [...at, 'identity_headers'], ctx.report)
    if (own.length !== Object.keys(spec.identity_headers).length) ok = false
    const byName = new Map(ctx.defaultIdentity.map((h) => [h.name, h]))
    for (const h of own) byName.set(h.name, h)
    headers = [...byName.values()]
  }
  let payload = ctx.defaultPayloadHeader
  if (spec.forward_payload_header !== undefined) {
    payload = spec.forward_payload_header === false ? null : payloadHeader(spec.forward_payload_header, headers, [...at, 'forward_payload_header'], ctx.report)
    if (spec.forward_payload_header !== false && payload === null) ok = false
  } else if (payload && headers.some((h) => h.name.replaceAll('_', '-') === payload!.replaceAll('_', '-'))) {
    ctx.report([...at, 'identity_headers'], `${payload} is the policy's forward_payload_header; give the identity header another name`)
    ok = false
  }
  return ok ? { headers, payloadHeader: payload, maxBytes: ctx.identityMaxBytes } : undefined
}

// The extractor keeps one bit per header source.
const MAX_HEADER_SOURCES = 30

/**
 * A route's token sources: its own `token_sources` (read for every issuer of the route), or
 * else each issuer's, merged: one place read by several issuers is one source accepting all
 * of them, and a token found there may only be checked by one of them.
 */
function compileTokenSources(override: readonly TokenSourceSpec[] | undefined, issuers: readonly Issuer[], fail: (at: DocPath, m: string) => void): TokenSources | undefined {
  const places = new Map<string, { place: SourcePlace; issuers: Issuer[] }>()
  let ok = true
  const read = (place: SourcePlace, by: readonly Issuer[], at: DocPath) => {
    const known = places.get(place.key)
    if (!known) {
      places.set(place.key, { place, issuers: [...by] })
      return
    }
    if (override) {
      fail(at, `the ${place.what} is already a token source`)
      ok = false
    } else if (known.place.prefix !== place.prefix) {
      fail(['auth', 'issuers'], `issuers ${known.issuers.map((i) => i.name).join(', ')} and ${by[0]!.name} read the ${place.what} with different prefixes ("${known.place.prefix}" and "${place.prefix}"); a route reads a header one way`)
      ok = false
    } else {
      for (const issuer of by) if (!known.issuers.includes(issuer)) known.issuers.push(issuer)
    }
  }
  if (override) {
    override.forEach((spec, i) => {
      const place = sourcePlace(spec)
      if (typeof place === 'string') {
        fail(['token_sources', i], place)
        ok = false
      } else read(place, issuers, ['token_sources', i])
    })
  } else {
    for (const issuer of issuers) {
      for (const spec of issuer.tokenSources) {
        const place = sourcePlace(spec)
        if (typeof place !== 'string') read(place, [issuer], ['auth', 'issuers'])
      }
    }
  }
  const all: TokenSource[] = [...places.values()].map(({ place, issuers: by }) => ({
    kind: place.kind, name: place.name, prefix: place.prefix, what: place.what, unprefixed: place.unprefixed, issuers: new IssuerSet(by),
  }))
  if (all.filter((s) => s.kind === 'header').length > MAX_HEADER_SOURCES) {
    fail(['auth', 'issuers'], `a route reads tokens from at most ${MAX_HEADER_SOURCES} headers`)
    ok = false
  }
  return ok ? tokenSources(all) : undefined
}

function known(map: ReadonlyMap<string, unknown>): string {
  return map.size ? ` (known: ${[...map.keys()].join(', ')})` : ''
}
