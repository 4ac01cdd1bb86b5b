// From a schema-valid policy document to immutable runtime objects: routes with precompiled
// matchers, issuers with prepared verifiers and key sources, upstreams with parsed URLs. The
// request path reads only these; it never sees YAML or the raw document. Each section compiles
// beside the code that runs it; this file puts them together in document order.
import { createHash } from 'node:crypto'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import type { IncomingMessage } from 'node:http'
import type { BindingEnvironment } from '../auth/binding.js'
import { compileDpop, type CompiledDpop } from '../auth/dpop_config.js'
import { compileIssuers, requiredForReadiness } from '../auth/issuer_config.js'
import { MemoryProofReplay, type ProofReplay } from '../auth/replay.js'
import { TokenCache } from '../auth/token_cache.js'
import { markSecretParameters } from '../http/urls.js'
import { compileCors } from '../proxy/cors.js'
import { clientCertificate, type ClientCertificateRule } from '../proxy/client_certificate.js'
import { compileHttpsRule, requestOrigin, type HttpsRule } from '../proxy/https_only.js'
import { compileIdentityDefaults } from '../proxy/identity_config.js'
import { compileUpstreams } from '../proxy/upstream.js'
import { compileRevocation } from '../revocation/config.js'
import { RouteTable, type RouteCandidate } from '../routing/route_table.js'
import { deepFreeze, type ClientLimits, type CompiledPolicy, type ListenProtocols, type Route } from './compiled.js'
import { compileRoute, compileRouteMatcher, type Declared } from './compile_route.js'
import type { LeftOut } from './compilable.js'
import { routeNames } from './route_names.js'
import { defaultsOf } from './defaults.js'
import { durationMs } from './duration.js'
import { lintIssuers } from './lint.js'
import { readPolicyDraft, type Env, type PolicySource } from './load.js'
import { filesReadAtLoad } from './policy_files.js'
import { PolicyError, type OnProblem } from './problems.js'
import { PolicySchema, type PolicyDocument, type RouteDocument } from './schema.js'
import { compileAdmin } from './admin_settings.js'
import { compileListenTls, type ListenTls } from './tls_files.js'

export type { ClientLimits, CompiledPolicy, Route, Upstream } from './compiled.js'

const MAX_WORKERS = 64
const DEFAULT = defaultsOf(PolicySchema, ['max_token_bytes', 'admin', 'workers', 'reject_path_parameters'])
const LIMITS_DEFAULT = defaultsOf(PolicySchema.properties.limits, [
  'max_header_bytes',
  'max_body_bytes',
  'headers_timeout',
  'request_timeout',
  'min_body_rate',
  'body_rate_window',
  'send_timeout',
  'max_connections',
  'max_connections_per_address',
])
const LISTEN_DEFAULT = defaultsOf(PolicySchema.properties.listen, ['host', 'reuse_port', 'protocols'])
const SHUTDOWN_DEFAULT = defaultsOf(PolicySchema.properties.shutdown, ['drain_delay', 'timeout'])
const LOG_DEFAULT = defaultsOf(PolicySchema.properties.log, ['level', 'access', 'time', 'level_label'])
const TOKEN_CACHE_DEFAULT = defaultsOf(PolicySchema.properties.token_cache, ['max_entries', 'max_bytes'])

/** Reads, checks and compiles a policy file; throws PolicyError listing every problem. */
export function loadPolicy(policyFile: string, log: Logger, env?: Env, previous?: CompiledPolicy): CompiledPolicy {
  // A draft: what the schema refuses does not keep the compile from saying the rest.
  return compilePolicy(readPolicyDraft(policyFile, env), log, previous)
}

/**
 * Compiles a checked document. With `previous` (a reload), issuers whose settings did not change
 * are kept as they are, and so are their caches; the token cache too when its size is the same.
 * Nothing `previous` holds is changed: until the caller commits the result, the running policy
 * is exactly as it was (a kept revocation store takes the new margin in commitRevocation).
 */
export function compilePolicy(source: PolicySource, log: Logger, previous?: CompiledPolicy): CompiledPolicy {
  const steps = compileSteps(source, log, previous)
  for (;;) {
    const step = steps.next()
    if (step.done) return step.value
  }
}

/**
 * compilePolicy for a running gateway's reload: the same steps, giving the event loop a turn
 * whenever one slice of them has run for `sliceMs`, so requests keep being answered while a
 * large policy compiles (5,000 routes take several hundred milliseconds).
 */
export async function compilePolicyInSlices(source: PolicySource, log: Logger, previous?: CompiledPolicy, sliceMs = 5): Promise<CompiledPolicy> {
  const steps = compileSteps(source, log, previous)
  let sliceStart = performance.now()
  for (;;) {
    const step = steps.next()
    if (step.done) return step.value
    if (performance.now() - sliceStart >= sliceMs) {
      await new Promise((resolve) => setImmediate(resolve))
      sliceStart = performance.now()
    }
  }
}

/** The compile, as steps: it yields where a caller may let other work run (between routes). */
function* compileSteps(source: PolicySource, log: Logger, previous?: CompiledPolicy): Generator<void, CompiledPolicy, void> {
  const doc = source.document
  // Done by the reader too; again here, where the reader was a worker thread with its own copy.
  markSecretParameters(doc.log?.redact_url_parameters ?? [])
  const problems = source.problems
  const problem: OnProblem = (at, message) => problems.add(at, message)

  const upstreams = compileUpstreams(doc.upstreams, source, problem)
  const listenTls = compileListenTls(doc.listen.tls, source, problem)
  const protocols = compileListenProtocols(doc.listen.protocols ?? LISTEN_DEFAULT.protocols, doc.listen.tls !== undefined, problem)
  const maxHeaderBytes = doc.limits?.max_header_bytes ?? LIMITS_DEFAULT.max_header_bytes
  const maxTokenBytes = doc.max_token_bytes ?? DEFAULT.max_token_bytes
  if (maxTokenBytes >= maxHeaderBytes) {
    problem(
      [doc.max_token_bytes !== undefined ? 'max_token_bytes' : 'limits'],
      `max_token_bytes (${maxTokenBytes}) must be less than limits.max_header_bytes (${maxHeaderBytes}): the token is part of the header section`,
    )
  }
  const clientLimits = compileClientLimits(doc.limits ?? {}, problem)
  const cors = doc.cors ? (compileCors(doc.cors, ['cors'], problem) ?? null) : null
  const https = compileHttpsRule(doc.require_https, doc.trusted_proxies, problem)
  const admin = compileAdmin(doc.admin ?? DEFAULT.admin, source, problem)
  const issuers = compileIssuers(doc.issuers ?? {}, source, log, problem, previous?.issuers)

  // Kept across reloads when its settings are unchanged, like an unchanged issuer. A token is
  // accepted until exp + its issuer's skew, so a revocation is kept that much longer.
  const marginMs = Math.max(0, ...[...issuers.values()].map((i) => i.clockSkewMs))
  const revocation = doc.revocation ? compileRevocation(doc.revocation, source, log, problem, previous?.revocation, marginMs) : null
  // A draft's routes with problems of their own are skipped, each other route keeping its index.
  const leftOut = source.leftOut
  const specs = leftOut ? doc.routes.map((spec, i) => (leftOut.routes.has(i) ? undefined : spec)) : doc.routes
  checkReplayAcrossWorkers(doc, specs, problem)
  const dpop = compileDpop(doc.dpop, source, workerCount(doc.workers ?? DEFAULT.workers), problem, previous?.auth.binding?.dpop)

  const identity = compileIdentityDefaults(doc, problem)
  const candidates: RouteCandidate<Route>[] = []
  // What the routes that did not compile match, to find the unreachable ones all the same.
  const failed: RouteCandidate<number>[] = []
  const names = routeNames(specs, problem)
  const routeContext = {
    upstreams,
    issuers,
    declared: declaredNames(doc, leftOut),
    identity,
    revocation: doc.revocation !== undefined,
    cors,
    maxBodyBytes: doc.limits?.max_body_bytes ?? LIMITS_DEFAULT.max_body_bytes,
    problem,
  }
  for (const [index, spec] of specs.entries()) {
    if (spec) {
      const matcher = compileRouteMatcher(spec, index, problem)
      const candidate = compileRoute(spec, index, names[index]!, matcher, routeContext)
      if (candidate) candidates.push(candidate)
      else if (matcher) failed.push({ ...matcher, value: index })
    }
    yield
  }
  const routes =
    candidates.length === doc.routes.length ? yield* routeTable(candidates, doc, problem) : yield* unreachableAmong(candidates, failed, doc, problem)

  if (problems.list.length || !routes || listenTls === undefined || !https || admin === undefined || !dpop) {
    for (const issuer of issuers.values()) if (previous?.issuers.get(issuer.name) !== issuer) issuer.stop()
    throw new PolicyError(problems.list)
  }
  // `jwtgate validate` prints these as file:line:col warnings; a running gateway logs them.
  for (const warning of lintIssuers(doc.issuers)) log.warn({ issuer: warning.issuer }, warning.message)
  const cacheEntries = doc.token_cache?.max_entries ?? TOKEN_CACHE_DEFAULT.max_entries
  const cacheBytes = doc.token_cache?.max_bytes ?? TOKEN_CACHE_DEFAULT.max_bytes

  yield* freezeInSteps(source.redacted)
  return deepFreeze<CompiledPolicy>({
    file: source.file,
    files: filesReadAtLoad(source.file, doc),
    hash: createHash('sha256').update(source.text).digest('hex'),
    listen: {
      host: doc.listen.host ?? LISTEN_DEFAULT.host,
      port: doc.listen.port,
      reusePort: doc.listen.reuse_port ?? LISTEN_DEFAULT.reuse_port,
      tls: listenTls,
      protocols,
    },
    maxHeaderBytes,
    clientLimits,
    cors,
    https,
    admin,
    shutdown: {
      drainDelayMs: durationMs(doc.shutdown?.drain_delay ?? SHUTDOWN_DEFAULT.drain_delay),
      timeoutMs: durationMs(doc.shutdown?.timeout ?? SHUTDOWN_DEFAULT.timeout),
    },
    workers: workerCount(doc.workers ?? DEFAULT.workers),
    requiredForReadiness: requiredForReadiness(doc.issuers ?? {}, issuers),
    redacted: source.redacted,
    logLevel: doc.log?.level ?? LOG_DEFAULT.level,
    accessLog: doc.log?.access ?? LOG_DEFAULT.access,
    lineFormat: { time: doc.log?.time ?? LOG_DEFAULT.time, levelLabel: doc.log?.level_label ?? LOG_DEFAULT.level_label },
    routes,
    issuers,
    upstreams,
    stripIdentityHeaders: identity.strip,
    rejectPathParameters: doc.reject_path_parameters ?? DEFAULT.reject_path_parameters,
    auth: {
      maxTokenBytes,
      // Entries name their issuer object: a kept issuer keeps its tokens valid, a replaced one
      // makes its entries unusable on every route, so carrying the cache over is safe.
      tokens:
        previous?.auth.tokens.maxEntries === cacheEntries && previous.auth.tokens.maxBytes === cacheBytes
          ? previous.auth.tokens
          : new TokenCache(cacheEntries, cacheBytes),
      revocation: revocation?.store ?? null,
      binding: bindingEnvironment(dpop, https, listenTls, doc, revocation?.store.proofReplay(dpop.replayEntries) ?? keptReplay(previous, dpop)),
    },
    revocation: revocation ?? null,
  })
}

/**
 * What binding checks need of the gateway: DPoP settings, where used proofs are remembered, and
 * how a request's origin and client certificate are read (behind trusted_proxies as they say).
 */
function bindingEnvironment(dpop: CompiledDpop, https: HttpsRule, tls: ListenTls | null, doc: PolicyDocument, replay: ProofReplay): BindingEnvironment {
  const header = doc.client_certificate_header
  const certificates: ClientCertificateRule = {
    verifiedOnly: !!tls?.clientCertificates?.ca,
    header: header ? { name: header.name.toLowerCase(), format: header.format } : null,
    https,
  }
  return {
    dpop: dpop.settings,
    replay,
    origin: (request) => requestOrigin(request as IncomingMessage, https),
    certificate: (request) => clientCertificate(request as IncomingMessage, certificates),
  }
}

/** The running policy's in-memory proof cache when it is the same size: a reload must not make used proofs new again. */
function keptReplay(previous: CompiledPolicy | undefined, dpop: CompiledDpop): ProofReplay {
  const running = previous?.auth.binding?.replay
  return running instanceof MemoryProofReplay && running.maxEntries === dpop.replayEntries ? running : new MemoryProofReplay(dpop.replayEntries)
}

/** deepFreeze, a list item at a time: the redacted copy of a large policy is as large as its document. */
function* freezeInSteps(value: unknown): Generator<void, void, void> {
  if (typeof value === 'object' && value !== null) {
    for (const section of Object.values(value)) {
      if (!Array.isArray(section)) continue
      for (const item of section) {
        deepFreeze(item)
        yield
      }
    }
  }
  deepFreeze(value)
}

/** `limits:` as the gateway's server and body wrapper apply them (src/gateway/app.ts, src/proxy/body_limit.ts). */
function compileClientLimits(limits: NonNullable<PolicyDocument['limits']>, problem: OnProblem): ClientLimits {
  const out: ClientLimits = {
    headersTimeoutMs: durationMs(limits.headers_timeout ?? LIMITS_DEFAULT.headers_timeout),
    requestTimeoutMs: durationMs(limits.request_timeout ?? LIMITS_DEFAULT.request_timeout),
    minBodyRate: limits.min_body_rate ?? LIMITS_DEFAULT.min_body_rate,
    bodyRateWindowMs: durationMs(limits.body_rate_window ?? LIMITS_DEFAULT.body_rate_window),
    sendTimeoutMs: durationMs(limits.send_timeout ?? LIMITS_DEFAULT.send_timeout),
    maxConnections: limits.max_connections ?? LIMITS_DEFAULT.max_connections,
    maxConnectionsPerAddress: limits.max_connections_per_address ?? LIMITS_DEFAULT.max_connections_per_address,
  }
  // Node refuses a header limit above the whole-request one.
  if (out.requestTimeoutMs > 0 && out.headersTimeoutMs > out.requestTimeoutMs) {
    problem(['limits', 'headers_timeout'], 'limits.headers_timeout must not be longer than limits.request_timeout')
  }
  if (out.minBodyRate > 0 && out.bodyRateWindowMs < 100) {
    problem(['limits', 'body_rate_window'], 'limits.body_rate_window must be at least 100ms while min_body_rate is set')
  }
  return out
}

/**
 * `listen.protocols`: h2c is HTTP/2 in clear and h2 HTTP/2 over TLS, so each goes with the
 * listener's TLS setting or not at all (a name that cannot apply would read as a promise).
 */
function compileListenProtocols(names: readonly string[], tls: boolean, problem: OnProblem): ListenProtocols {
  names.forEach((name, i) => {
    if (name === 'h2' && !tls) problem(['listen', 'protocols', i], 'h2 is HTTP/2 over TLS and needs listen.tls; HTTP/2 in clear is h2c')
    if (name === 'h2c' && tls) problem(['listen', 'protocols', i], 'h2c is HTTP/2 in clear; with listen.tls HTTP/2 is h2 (chosen by ALPN)')
  })
  return { http1: names.includes('http1'), http2: names.includes(tls ? 'h2' : 'h2c') }
}

function workerCount(workers: NonNullable<PolicyDocument['workers']>): number {
  return workers === 'auto' ? Math.min(MAX_WORKERS, availableParallelism()) : workers
}

/**
 * The memory and file backends remember used one-time tokens in each process: with several
 * workers a token could be used once per worker.
 */
function checkReplayAcrossWorkers(doc: PolicyDocument, routes: ReadonlyArray<RouteDocument | undefined>, problem: OnProblem): void {
  if ((doc.workers ?? DEFAULT.workers) === 1 || !doc.revocation || doc.revocation.backend === 'redis') return
  const index = routes.findIndex((r) => r?.replay_protection)
  if (index >= 0)
    problem(
      ['routes', index, 'replay_protection'],
      `replay_protection with more than one worker needs revocation.backend: redis; the ${doc.revocation.backend} backend remembers used tokens in each worker process`,
    )
}

/** The route table, once every route compiled; a route no request could reach is a problem. */
function* routeTable(candidates: RouteCandidate<Route>[], doc: PolicyDocument, problem: OnProblem): Generator<void, RouteTable<Route>, void> {
  const routes = yield* RouteTable.build(candidates)
  yield* unreachable(routes, (position) => position, doc, problem)
  return routes
}

/**
 * When some routes did not compile (each problem said), the unreachable among the others and
 * those of them whose path and host did: so one run says both. There is no route table.
 */
function* unreachableAmong(
  candidates: readonly RouteCandidate<Route>[],
  failed: readonly RouteCandidate<number>[],
  doc: PolicyDocument,
  problem: OnProblem,
): Generator<void, undefined, void> {
  const matchers = [...candidates.map((c) => ({ ...c, value: c.value.index })), ...failed].sort((a, b) => a.value - b.value)
  yield* unreachable(yield* RouteTable.build(matchers), (position) => matchers[position]!.value, doc, problem)
  return undefined
}

/** Each route some earlier route shadows, said at its path; `indexOf` maps a position in the table to the route's index. */
function* unreachable<T>(table: RouteTable<T>, indexOf: (position: number) => number, doc: PolicyDocument, problem: OnProblem): Generator<void, void, void> {
  for (const found of table.shadowing()) {
    if (found) {
      const [index, by] = [indexOf(found.index), indexOf(found.by)]
      problem(['routes', index, 'path'], `route is unreachable: routes[${by}] (${doc.routes[by]!.path}) matches every request it would`)
    }
    yield
  }
}

/**
 * Issuers and upstreams the policy declares, whether or not they compiled: a route naming one
 * that did not is not told it is unknown, since its own problem is said where it is declared.
 */
function declaredNames(doc: PolicyDocument, leftOut: LeftOut | undefined): Declared {
  return {
    issuers: new Set([...Object.keys(doc.issuers ?? {}), ...(leftOut?.issuers ?? [])]),
    upstreams: new Set([...Object.keys(doc.upstreams), ...(leftOut?.upstreams ?? [])]),
  }
}
