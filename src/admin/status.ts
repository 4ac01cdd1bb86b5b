// The status page's data: what the gateway enforces, how it is doing, and why it said no. One
// process gives its part (processStatus: figures, keys, refusals, connections), which a worker
// sends to its primary over IPC; statusDocument joins the parts with the loaded policy into what
// GET /status.json answers and the page shows. Everything is read from what the gateway keeps
// anyway (the counters, the key caches, the health checks); nothing here runs per request.
import { readFileSync } from 'node:fs'
import type { FetchOutcome, KeyDetails } from '../auth/jwks_cache.js'
import { explainLoaded, requirementWords, type Question } from '../explain.js'
import { fail, type FailureReason } from '../http/denial.js'
import { redactUrl } from '../http/urls.js'
import type { CompiledPolicy, Route } from '../policy/compile.js'
import type { PolicyDocument } from '../policy/schema.js'
import type { UpstreamCheckDetails } from '../proxy/upstream_health.js'
import type { PoolStats } from '../proxy/upstream_pools.js'
import type { RevocationStats } from '../revocation/store.js'
import type { IssuerCounts, Metrics } from './metrics.js'
import type { Refusal } from './refusals.js'
import { combine, deniedTotal, emptyCounts, quantile, type Counts, type RouteFigures, type RouteWindows } from './route_figures.js'

/** One issuer's key cache in one process. */
export interface IssuerKeys {
  name: string
  ready: boolean
  keys: KeyDetails[]
  /** The key set URL last fetched (with discovery, the one the document named), redacted. */
  jwksUri: string | undefined
  lastFetch: FetchOutcome | undefined
  lastSuccessAt: number | undefined
  nextFetchAt: number | undefined
  cooldownUntil: number | undefined
}

/** One gateway process's part of the page (a single gateway's whole). Plain data: it crosses the cluster's IPC channel. */
export interface ProcessStatus {
  pid: number
  startedAt: number
  policyHash: string
  routes: Record<string, RouteFigures>
  issuers: IssuerKeys[]
  issuerCounts: Record<string, IssuerCounts>
  refusals: Refusal[]
  pools: PoolStats[]
  checks: UpstreamCheckDetails[]
  revocation: RevocationStats | null
}

/** What a process's part is read from. */
export interface ProcessParts {
  policy(): CompiledPolicy
  metrics: Metrics
  windows: RouteWindows
  pools(): ProcessStatus['pools']
  checks(): UpstreamCheckDetails[]
  startedAt: number
}

export async function processStatus(parts: ProcessParts): Promise<ProcessStatus> {
  const policy = parts.policy()
  return {
    pid: process.pid,
    startedAt: parts.startedAt,
    policyHash: policy.hash,
    routes: await parts.windows.figures(),
    issuers: [...policy.issuers.values()].map((issuer) => {
      const cache = issuer.jwks
      return {
        name: issuer.name,
        ready: issuer.ready,
        keys: cache ? cache.keyDetails() : [],
        jwksUri: cache?.status.jwksUri === undefined ? undefined : redactUrl(cache.status.jwksUri),
        lastFetch: cache?.status.lastFetch,
        lastSuccessAt: cache?.status.lastSuccessAt,
        nextFetchAt: cache?.nextFetchAt,
        cooldownUntil: cache?.cooldownUntil,
      }
    }),
    issuerCounts: parts.metrics.issuerCounts(),
    refusals: parts.metrics.refusals.list(),
    pools: parts.pools(),
    checks: parts.checks(),
    revocation: policy.revocation?.store.stats() ?? null,
  }
}

/** A worker of `workers: N` as the page lists it; its part when it answered. */
export interface WorkerPart {
  worker: number
  state: string
  status?: ProcessStatus
  /** Why it did not answer. */
  error?: string
}

export interface StatusInput {
  policy: CompiledPolicy
  loadedAt: Date
  /** As GET /config has it (./server.ts ReloadOutcome). */
  lastReload: { at: Date; ok: boolean; problems: string[] } | null
  readiness: { reasons: string[]; degraded: string[] }
  /** When this process (the primary, with workers) started. */
  startedAt: number
  /** One part for a single gateway; one per worker with `workers: N`. */
  parts: WorkerPart[]
  clustered: boolean
  /** How many refused requests to show (admin.status.recent_refusals). */
  recentRefusals: number
}

export interface StatusFigures {
  requests: number
  allowed: number
  denied: Record<string, number>
  denied_total: number
  server_errors: number
  /** mode: report: what enforcing would have refused. */
  would_deny?: Record<string, number>
  /** Estimated from the latency histogram's buckets; null without requests. */
  p50_ms: number | null
  p99_ms: number | null
}

export interface StatusRoute {
  index: number
  name: string
  host: string | null
  methods: string[] | null
  path: string
  upstream: { name: string; url: string }
  auth: 'none' | 'token'
  /** What the route requires, in `jwtgate explain`'s words. */
  requires: string[]
  mode: 'enforce' | 'report'
  since_start: StatusFigures
  last_5m: StatusFigures
  /** No request has matched it since the start. */
  never_matched: boolean
}

export interface StatusIssuer {
  name: string
  iss: string
  source: { kind: 'jwks'; url: string } | { kind: 'discovery'; url: string; jwks_url: string | null } | { kind: 'secret'; secrets: number }
  algorithms: string[]
  audiences: string[]
  ready: boolean
  keys: Array<{ kid: string | null; kty: string; crv: string | null; alg: string | null; algorithms: string[]; first_seen: string | null }>
  last_fetch: { at: string; result: 'ok' | 'error'; duration_ms: number; http_status: number | null; error: string | null } | null
  last_success: string | null
  next_refresh: string | null
  cooldown: { seconds: number; until: string | null; active: boolean } | null
  tokens: { accepted: number; refused: Record<string, number> }
  /** With workers: each worker's keys and last fetch (every worker fetches for itself). */
  workers?: Array<{ worker: number; keys: number; last_fetch: StatusIssuer['last_fetch'] }>
}

export interface StatusRefusal {
  at: string
  request_id: string
  method: string
  path: string
  route: string | null
  status: number
  reason: string
  words: string
  issuer: string | null
  upstream: string | null
  subject?: string
  worker?: number
}

export interface StatusUpstream {
  name: string
  url: string
  /** `streams`: for an HTTP/2 upstream, the streams open on its connections. */
  connections: { open: number; in_use: number; waiting: number; streams?: number }
  health: { state: 'healthy' | 'unhealthy' | 'not checked yet'; path: string; check: string; last_check: string | null; last_problem: string | null } | null
  /** Its failures among the recent refusals, newest first. */
  recent_errors: Array<{ at: string; reason: string; route: string | null; request_id: string }>
}

export interface StatusDocument {
  generated_at: string
  overview: {
    version: string
    node: string
    started_at: string
    policy: { file: string; hash: string; loaded_at: string }
    last_reload: { at: string; result: 'success' | 'failure'; problems: string[] } | null
    ready: boolean
    reasons: string[]
    degraded: string[]
    workers: Array<{ worker: number; state: string; pid: number | null; policy_hash: string | null; error?: string }> | null
  }
  routes: StatusRoute[]
  issuers: StatusIssuer[]
  refusals: StatusRefusal[]
  /** The refusals kept (admin.status.recent_refusals). */
  refusals_kept: number
  revocation: (RevocationStats & { workers?: Array<{ worker: number; state: string; jti: number; subjects: number; last_sync: string | null }> }) | null
  upstreams: StatusUpstream[]
}

export function statusDocument(input: StatusInput): StatusDocument {
  const { policy } = input
  const parts = input.parts.flatMap((p) => (p.status ? [{ worker: p.worker, status: p.status }] : []))
  const document = policy.redacted as PolicyDocument
  return {
    generated_at: new Date().toISOString(),
    overview: {
      version: version(),
      node: process.version,
      started_at: iso(input.startedAt)!,
      policy: { file: policy.file, hash: policy.hash, loaded_at: input.loadedAt.toISOString() },
      last_reload: input.lastReload && {
        at: input.lastReload.at.toISOString(),
        result: input.lastReload.ok ? 'success' : 'failure',
        problems: input.lastReload.problems,
      },
      ready: input.readiness.reasons.length === 0,
      reasons: input.readiness.reasons,
      degraded: input.readiness.degraded,
      workers: input.clustered
        ? input.parts.map((p) => ({
            worker: p.worker,
            state: p.state,
            pid: p.status?.pid ?? null,
            policy_hash: p.status?.policyHash ?? null,
            ...(p.error ? { error: p.error } : {}),
          }))
        : null,
    },
    routes: policy.routes.values().map((route) =>
      routeRow(
        policy,
        document,
        route,
        parts.map((p) => p.status.routes[route.name]),
      ),
    ),
    issuers: [...policy.issuers.values()].map((issuer) => issuerRow(policy, document, issuer.name, parts, input.clustered)),
    refusals: refusalRows(parts, input.clustered, input.recentRefusals),
    refusals_kept: input.recentRefusals,
    revocation: revocationRow(parts, input.clustered),
    upstreams: [...policy.upstreams.values()].map((upstream) => upstreamRow(document, upstream.name, upstream.origin, parts)),
  }
}

/** The "ask the policy" form's answer: `jwtgate explain`'s, from the loaded policy; no token is verified, nothing is forwarded. */
export function askPolicy(policy: CompiledPolicy, question: Question) {
  return explainLoaded(policy, policy.redacted as PolicyDocument, question)
}

function routeRow(policy: CompiledPolicy, document: PolicyDocument, route: Route, figures: Array<RouteFigures | undefined>): StatusRoute {
  const spec = document.routes[route.index]!
  let total = emptyCounts()
  let recent = emptyCounts()
  for (const f of figures) {
    if (!f) continue
    total = combine(total, f.total)
    recent = combine(recent, f.recent)
  }
  return {
    index: route.index,
    name: route.name,
    host: spec.host ?? null,
    methods: spec.methods ?? null,
    path: spec.path,
    upstream: { name: route.upstream.name, url: document.upstreams[route.upstream.name]?.url ?? route.upstream.origin },
    auth: route.auth ? 'token' : 'none',
    requires: requirementWords(policy, route, document),
    mode: route.report ? 'report' : 'enforce',
    since_start: figureRow(total, route.report),
    last_5m: figureRow(recent, route.report),
    never_matched: total.requests === 0,
  }
}

function figureRow(c: Counts, report: boolean): StatusFigures {
  const ms = (q: number) => {
    const s = quantile(c.latency, q)
    return s === undefined ? null : Math.round(s * 100_000) / 100
  }
  const denied = deniedTotal(c)
  return {
    requests: c.requests,
    allowed: c.requests - denied,
    denied: c.denied,
    denied_total: denied,
    server_errors: c.serverErrors,
    ...(report ? { would_deny: c.reported } : {}),
    p50_ms: ms(0.5),
    p99_ms: ms(0.99),
  }
}

function issuerRow(
  policy: CompiledPolicy,
  document: PolicyDocument,
  name: string,
  parts: Array<{ worker: number; status: ProcessStatus }>,
  clustered: boolean,
): StatusIssuer {
  const issuer = policy.issuers.get(name)!
  const spec = document.issuers?.[name]
  const states = parts.flatMap((p) => {
    const keys = p.status.issuers.find((i) => i.name === name)
    return keys ? [{ worker: p.worker, keys }] : []
  })
  // The process that fetched last speaks for the keys; with workers, each worker's are listed too.
  const latest = states.reduce<(typeof states)[number] | undefined>((a, b) => ((b.keys.lastFetch?.at ?? 0) > (a?.keys.lastFetch?.at ?? -1) ? b : a), undefined)
  const tokens = { accepted: 0, refused: {} as Record<string, number> }
  for (const p of parts) {
    const c = p.status.issuerCounts[name]
    if (!c) continue
    tokens.accepted += c.accepted
    for (const [reason, n] of Object.entries(c.refused)) tokens.refused[reason] = (tokens.refused[reason] ?? 0) + n
  }
  const secrets = spec?.secrets?.length ?? (spec?.secret !== undefined || spec?.secret_file !== undefined ? 1 : 0)
  const source: StatusIssuer['source'] = issuer.jwks
    ? typeof issuer.jwks.settings.uri === 'string'
      ? { kind: 'jwks', url: spec?.jwks_uri ?? redactUrl(issuer.jwks.settings.uri) }
      : { kind: 'discovery', url: `${issuer.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, jwks_url: latest?.keys.jwksUri ?? null }
    : { kind: 'secret', secrets }
  const cooldownMs = issuer.jwks?.settings.cooldownMs
  const until = latest?.keys.cooldownUntil
  return {
    name,
    iss: issuer.issuer,
    source,
    algorithms: [...issuer.algorithms],
    audiences: [...issuer.audiences],
    ready: states.length ? states.every((s) => s.keys.ready) : issuer.ready,
    keys: issuer.jwks
      ? (latest?.keys.keys ?? []).map((k) => ({
          kid: k.kid ?? null,
          kty: k.kty,
          crv: k.crv ?? null,
          alg: k.alg ?? null,
          algorithms: k.algorithms,
          first_seen: iso(k.firstSeenAt),
        }))
      : secretKeys(spec, issuer.algorithms),
    last_fetch: fetchRow(latest?.keys.lastFetch),
    last_success: iso(latest?.keys.lastSuccessAt),
    next_refresh: iso(latest?.keys.nextFetchAt),
    cooldown: cooldownMs === undefined ? null : { seconds: cooldownMs / 1000, until: iso(until), active: until !== undefined && until > Date.now() },
    tokens,
    ...(clustered && issuer.jwks
      ? { workers: states.map((s) => ({ worker: s.worker, keys: s.keys.keys.length, last_fetch: fetchRow(s.keys.lastFetch) })) }
      : {}),
  }
}

/** A shared-secret issuer's keys: one per secret, by kid; never the secret. */
function secretKeys(spec: NonNullable<PolicyDocument['issuers']>[string] | undefined, algorithms: ReadonlySet<string>): StatusIssuer['keys'] {
  const kids = spec?.secrets ? spec.secrets.map((s) => s.kid ?? null) : [null]
  return kids.map((kid) => ({ kid, kty: 'oct', crv: null, alg: null, algorithms: [...algorithms], first_seen: null }))
}

function fetchRow(f: FetchOutcome | undefined): StatusIssuer['last_fetch'] {
  if (!f) return null
  return { at: iso(f.at)!, result: f.ok ? 'ok' : 'error', duration_ms: f.durationMs, http_status: f.httpStatus ?? null, error: f.error ?? null }
}

function refusalRows(parts: Array<{ worker: number; status: ProcessStatus }>, clustered: boolean, limit: number): StatusRefusal[] {
  const all = parts.flatMap((p) => p.status.refusals.map((r) => (clustered ? { ...r, worker: p.worker } : r)))
  all.sort((a, b) => b.at - a.at)
  return all.slice(0, limit).map((r) => ({
    at: iso(r.at)!,
    request_id: r.requestId,
    method: r.method,
    path: r.path,
    route: r.route ?? null,
    status: r.status,
    reason: r.reason,
    words: r.description || reasonWords(r.reason),
    issuer: r.issuer ?? null,
    upstream: r.upstream ?? null,
    ...(r.subject !== undefined ? { subject: r.subject } : {}),
    ...(r.worker !== undefined ? { worker: r.worker } : {}),
  }))
}

const FAILURES = new Set<string>(['upstream_unreachable', 'upstream_timeout', 'bad_request', 'internal_error', 'request_timeout', 'upstream_busy'])

/** A failure's words, from the one table of them (../http/denial.ts). */
function reasonWords(reason: string): string {
  return FAILURES.has(reason) ? fail(reason as FailureReason).description : reason
}

function revocationRow(parts: Array<{ worker: number; status: ProcessStatus }>, clustered: boolean): StatusDocument['revocation'] {
  const first = parts.find((p) => p.status.revocation)?.status.revocation
  if (!first) return null
  if (!clustered) return first
  return {
    ...first,
    workers: parts.flatMap((p) =>
      p.status.revocation
        ? [
            {
              worker: p.worker,
              state: p.status.revocation.state,
              jti: p.status.revocation.jti,
              subjects: p.status.revocation.subjects,
              last_sync: p.status.revocation.last_sync,
            },
          ]
        : [],
    ),
  }
}

function upstreamRow(document: PolicyDocument, name: string, origin: string, parts: Array<{ worker: number; status: ProcessStatus }>): StatusUpstream {
  const connections: StatusUpstream['connections'] = { open: 0, in_use: 0, waiting: 0 }
  const checks: UpstreamCheckDetails[] = []
  for (const p of parts) {
    const pool = p.status.pools.find((s) => s.origin === origin)
    if (pool) {
      connections.open += pool.connected
      connections.in_use += pool.inUse
      connections.waiting += pool.queued
      if (pool.streams !== undefined) connections.streams = (connections.streams ?? 0) + pool.streams
    }
    const check = p.status.checks.find((c) => c.upstream === name)
    if (check) checks.push(check)
  }
  const errors = parts
    .flatMap((p) => p.status.refusals.filter((r) => r.upstream === name))
    .sort((a, b) => b.at - a.at)
    .slice(0, 5)
  // Healthy only when every process sees it so, as the gauge's aggregation says.
  const health: StatusUpstream['health'] = checks.length
    ? {
        state: checks.some((c) => c.healthy === false) ? 'unhealthy' : checks.every((c) => c.healthy) ? 'healthy' : 'not checked yet',
        path: checks[0]!.path,
        check: checks[0]!.check,
        last_check: iso(Math.max(...checks.map((c) => c.lastCheckAt ?? 0)) || undefined),
        last_problem: checks.find((c) => c.lastProblem)?.lastProblem ?? null,
      }
    : null
  return {
    name,
    url: document.upstreams[name]?.url ?? origin,
    connections,
    health,
    recent_errors: errors.map((r) => ({ at: iso(r.at)!, reason: r.reason, route: r.route ?? null, request_id: r.requestId })),
  }
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString()
}

let packageVersion: string | undefined

/** The version in the package.json beside src/ and dist/ (the image ships it). */
function version(): string {
  packageVersion ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  return packageVersion
}
