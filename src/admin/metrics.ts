// Prometheus metrics (prom-client). Names and labels are part of the interface: the Grafana
// dashboard and alerts query them, and a test checks the dashboard only uses these.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Issuer } from '../auth/issuer.js'
import type { RequestState } from '../gateway/request_state.js'
import type { OutputLosses } from '../log_output.js'
import { RefusalRing } from './refusals.js'
import { emptyCounts, LATENCY_BUCKETS, type Counts } from './route_figures.js'
import { Histogram, RequestCounter } from './series.js'

export const METRIC_NAMES = [
  'jwtgate_requests_total',
  'jwtgate_auth_failures_total',
  'jwtgate_request_duration_seconds',
  'jwtgate_upstream_duration_seconds',
  'jwtgate_jwks_fetches_total',
  'jwtgate_jwks_keys',
  'jwtgate_jwks_last_success_age_seconds',
  'jwtgate_policy_reloads_total',
  'jwtgate_policy_last_reload_success',
  'jwtgate_policy_last_reload_timestamp_seconds',
  'jwtgate_policy_info',
  'jwtgate_token_cache_entries',
  'jwtgate_report_decisions_total',
  'jwtgate_client_timeouts_total',
  'jwtgate_connections_refused_total',
  'jwtgate_upstream_queue_timeouts_total',
  'jwtgate_websocket_closed_total',
  'jwtgate_revocations_dropped_total',
  'jwtgate_upstream_healthy',
  'jwtgate_revocation_backend_up',
  'jwtgate_log_lines_dropped_total',
] as const

/** Which slow-client bound cut a client (limits: in the policy). */
export type ClientTimeoutKind = 'headers' | 'request' | 'body_rate' | 'send'
/** Why a client connection was closed as it opened. */
export type RefusedConnection = 'max_connections' | 'per_address'

/** Requests whose token was checked against one issuer: accepted, and refused by reason. Only the status page reads them. */
export interface IssuerCounts {
  accepted: number
  refused: Record<string, number>
}

export class Metrics {
  readonly registry = new Registry()
  // The three written on every request: plain numbers until a scrape (./series.ts).
  private readonly requests = new RequestCounter(this.registry)
  private readonly authFailures = new Counter({
    name: 'jwtgate_auth_failures_total',
    help: 'Refused requests by route and reason (the reason codes of the 4xx/503 bodies).',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  })
  private readonly reportDecisions = new Counter({
    name: 'jwtgate_report_decisions_total',
    help: 'Decisions on mode: report routes, which forward every request: allow, or deny with the reason it would have had.',
    labelNames: ['route', 'decision', 'reason'] as const,
    registers: [this.registry],
  })
  private readonly requestDuration = new Histogram(
    'jwtgate_request_duration_seconds',
    'Time from request to response, by route.',
    'route',
    LATENCY_BUCKETS,
    this.registry,
  )
  private readonly upstreamDuration = new Histogram(
    'jwtgate_upstream_duration_seconds',
    'Time from forwarding to the upstream response headers, by upstream.',
    'upstream',
    LATENCY_BUCKETS,
    this.registry,
  )
  private readonly jwksFetches = new Counter({
    name: 'jwtgate_jwks_fetches_total',
    help: 'Key set fetches by issuer and result (ok or error).',
    labelNames: ['issuer', 'result'] as const,
    registers: [this.registry],
  })
  private readonly clientTimeouts = new Counter({
    name: 'jwtgate_client_timeouts_total',
    help: 'Clients cut for slowness, by kind: headers, request (the whole request), body_rate (an upload under limits.min_body_rate), send (a response not read).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  })
  private readonly refusedConnections = new Counter({
    name: 'jwtgate_connections_refused_total',
    help: 'Client connections closed as they opened, by reason: max_connections or per_address.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })
  private readonly queueTimeouts = new Counter({
    name: 'jwtgate_upstream_queue_timeouts_total',
    help: 'Requests answered 503 upstream_busy: no connection to the upstream became free within its timeout.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  private readonly reloads = new ReloadMetrics(this.registry)
  private readonly droppedRevocations = revocationsDropped(this.registry)
  private readonly websocketsClosed = new Counter({
    name: 'jwtgate_websocket_closed_total',
    help: 'WebSocket tunnels the gateway closed (close frame 1008) because their token expired or was revoked, by route and reason.',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  })
  // With `workers: N` the primary adds up its workers' series (../cluster/primary_admin.ts):
  // counters and histograms are summed; these say the same in every worker, so one is shown.
  private readonly policyInfo = new Gauge({
    name: 'jwtgate_policy_info',
    help: 'The loaded policy: 1, labelled with its sha256.',
    labelNames: ['hash'] as const,
    registers: [this.registry],
    aggregator: 'first',
  })
  /** Issuers of the live policy, read at scrape time. */
  private issuers: Issuer[] = []
  private tokenCacheSize = () => 0
  private upstreamStates: () => Array<{ upstream: string; healthy: boolean }> = () => []
  private revocationState: () => { backend: string; state: string } | undefined = () => undefined
  private logLosses: OutputLosses | undefined
  // What only the status page reads, kept beside the counters and never exported: /metrics
  // scrapes cost what they did.
  readonly refusals = new RefusalRing(100)
  private readonly byIssuer = new Map<string, IssuerCounts>()

  constructor() {
    collectDefaultMetrics({ register: this.registry })
    // Every series at 0 from the start, so a rate() sees the first one.
    for (const kind of ['headers', 'request', 'body_rate', 'send'] as const) this.clientTimeouts.labels(kind).inc(0)
    for (const reason of ['max_connections', 'per_address'] as const) this.refusedConnections.labels(reason).inc(0)
    const metrics = this
    new Gauge({
      name: 'jwtgate_jwks_keys',
      help: 'Signing keys currently cached, by issuer.',
      labelNames: ['issuer'] as const,
      registers: [this.registry],
      aggregator: 'max',
      collect() {
        this.reset()
        for (const i of metrics.issuers) if (i.jwks) this.set({ issuer: i.name }, i.jwks.status.keyCount)
      },
    })
    new Gauge({
      name: 'jwtgate_jwks_last_success_age_seconds',
      help: 'Seconds since the last successful key set fetch, by issuer (absent until the first).',
      // The worker whose keys are oldest: what a staleness alert is about.
      labelNames: ['issuer'] as const,
      registers: [this.registry],
      aggregator: 'max',
      collect() {
        this.reset()
        const now = Date.now()
        for (const i of metrics.issuers) {
          const at = i.jwks?.status.lastSuccessAt
          if (at !== undefined) this.set({ issuer: i.name }, (now - at) / 1000)
        }
      },
    })
    new Gauge({
      name: 'jwtgate_upstream_healthy',
      help: 'Upstreams with a health: check, 1 while it passes, 0 while it fails or before its first outcome.',
      labelNames: ['upstream'] as const,
      registers: [this.registry],
      // Healthy only if every worker sees it so.
      aggregator: 'min',
      collect() {
        this.reset()
        for (const { upstream, healthy } of metrics.upstreamStates()) this.set({ upstream }, healthy ? 1 : 0)
      },
    })
    new Gauge({
      name: 'jwtgate_revocation_backend_up',
      help: 'With revocation: configured, by backend: 1 while the list is synced with it, 0 while loading or while it is away (absent without revocation:).',
      labelNames: ['backend'] as const,
      registers: [this.registry],
      aggregator: 'min',
      collect() {
        this.reset()
        const store = metrics.revocationState()
        if (store) this.set({ backend: store.backend }, store.state === 'synced' ? 1 : 0)
      },
    })
    new Counter({
      name: 'jwtgate_log_lines_dropped_total',
      help: 'Log lines not written, by reason: output_full (standard output was not read and 16 MB of lines waited), write_error (a write to it failed).',
      labelNames: ['reason'] as const,
      registers: [this.registry],
      collect() {
        this.reset()
        this.inc({ reason: 'output_full' }, metrics.logLosses?.full ?? 0)
        this.inc({ reason: 'write_error' }, metrics.logLosses?.failed ?? 0)
      },
    })
    new Gauge({
      name: 'jwtgate_token_cache_entries',
      help: 'Verified tokens currently cached.',
      registers: [this.registry],
      collect() {
        this.set(metrics.tokenCacheSize())
      },
    })
  }

  /** What the log's output could not write (../log_output.ts), read at scrape time. */
  watchLog(losses: OutputLosses | undefined): void {
    this.logLosses = losses
  }

  /** Called with each policy that goes live. */
  policyLoaded(hash: string, issuers: Iterable<Issuer>, tokenCacheSize: () => number): void {
    this.policyInfo.reset()
    this.policyInfo.set({ hash }, 1)
    this.issuers = [...issuers]
    this.tokenCacheSize = tokenCacheSize
  }

  /** Where the upstream health gauge reads from (../proxy/upstream_health.ts). */
  watchUpstreams(states: () => Array<{ upstream: string; healthy: boolean }>): void {
    this.upstreamStates = states
  }

  /** Where the revocation backend gauge reads the live store's state from. */
  watchRevocation(state: () => { backend: string; state: string } | undefined): void {
    this.revocationState = state
  }

  /** Counts the key set fetches of these issuers; call before they start fetching. */
  instrument(issuers: Iterable<Issuer>): void {
    for (const issuer of issuers) {
      if (issuer.jwks && !issuer.jwks.onFetch) issuer.jwks.onFetch = (ok) => this.jwksFetches.inc({ issuer: issuer.name, result: ok ? 'ok' : 'error' })
    }
  }

  revocationsDropped(count: number): void {
    this.droppedRevocations.inc(count)
  }

  websocketClosed(reason: string, route: string): void {
    this.websocketsClosed.labels(route, reason).inc()
  }

  reloaded(ok: boolean): void {
    this.reloads.record(ok)
  }

  request(route: string, method: string, status: number, seconds: number, denied: string | undefined): void {
    this.requests.inc(route, method, STATUS_CLASS[Math.floor(status / 100)] ?? 'other')
    this.requestDuration.of(route).observe(seconds)
    if (denied) this.authFailures.labels(route, denied).inc()
  }

  /**
   * What the status page needs of a finished request that the counters do not keep: the issuer
   * its token was checked against, and, for a refusal or an upstream failure, the request itself
   * in the ring of recent refusals.
   */
  remember(state: RequestState | undefined, requestId: string, method: string, target: string, status: number): void {
    if (!state) return
    const issuer = state.issuer
    if (issuer) {
      let counts = this.byIssuer.get(issuer.name)
      if (!counts) this.byIssuer.set(issuer.name, (counts = { accepted: 0, refused: {} }))
      const refused = state.denial?.reason ?? state.reported?.reason
      if (refused) counts.refused[refused] = (counts.refused[refused] ?? 0) + 1
      else counts.accepted++
    }
    if (!state.denial && !state.upstreamError) return
    const settings = state.policy.admin?.status
    if (settings && settings.recentRefusals !== this.refusals.size) this.refusals.resize(settings.recentRefusals)
    this.refusals.remember(state, requestId, method, target, status, settings?.showSubjects === true)
  }

  /** Requests checked against each issuer's tokens, since the start. */
  issuerCounts(): Record<string, IssuerCounts> {
    return Object.fromEntries([...this.byIssuer].map(([name, c]) => [name, { accepted: c.accepted, refused: { ...c.refused } }]))
  }

  /**
   * Every route's figures since the start, read from the counters /metrics exports
   * (jwtgate_requests_total, jwtgate_auth_failures_total, jwtgate_report_decisions_total,
   * jwtgate_request_duration_seconds): the status page's routes table.
   */
  async routeTotals(): Promise<Map<string, Counts>> {
    const out = new Map<string, Counts>()
    const of = (route: string) => {
      let c = out.get(route)
      if (!c) out.set(route, (c = emptyCounts()))
      return c
    }
    for (const [route, { requests, serverErrors }] of this.requests.byRoute()) {
      const c = of(route)
      c.requests = requests
      c.serverErrors = serverErrors
    }
    for (const { labels, value } of (await this.authFailures.get()).values) {
      if (value) of(String(labels.route)).denied[String(labels.reason)] = value
    }
    for (const { labels, value } of (await this.reportDecisions.get()).values) {
      if (value && labels.decision === 'deny') of(String(labels.route)).reported[String(labels.reason)] = value
    }
    for (const [route, series] of this.requestDuration.entries()) of(route).latency = [...series.counts]
    return out
  }

  /** A request on a `mode: report` route: what enforcing would have done (reason `none` when allowed). */
  reportDecision(route: string, wouldDeny: string | undefined): void {
    this.reportDecisions.labels(route, wouldDeny ? 'deny' : 'allow', wouldDeny ?? 'none').inc()
  }

  clientTimeout(kind: ClientTimeoutKind): void {
    this.clientTimeouts.labels(kind).inc()
  }

  connectionRefused(reason: RefusedConnection): void {
    this.refusedConnections.labels(reason).inc()
  }

  upstreamQueueTimeout(upstream: string): void {
    this.queueTimeouts.labels(upstream).inc()
  }

  upstream(name: string, seconds: number): void {
    this.upstreamDuration.of(name).observe(seconds)
  }
}

/**
 * `jwtgate_policy_reloads_total`, and, as Prometheus exports for its own configuration, whether
 * the last reload succeeded and when it ran: a bad ConfigMap edit leaves running pods serving the
 * old policy, so the alert reads the gauge, which stays 0 until a reload succeeds (the counter's
 * rate would fade). The start counts as a successful load. With `workers: N` the primary records
 * its own reloads (it decides them, and refuses a bad policy before any worker sees it) instead
 * of its workers'.
 */
export class ReloadMetrics {
  private readonly total: Counter<'result'>
  private readonly lastSuccess: Gauge
  private readonly lastTimestamp: Gauge

  constructor(registry: Registry) {
    this.total = new Counter({
      name: 'jwtgate_policy_reloads_total',
      help: 'Policy reloads by result (success or failure).',
      labelNames: ['result'] as const,
      registers: [registry],
    })
    for (const r of ['success', 'failure'] as const) this.total.inc({ result: r }, 0)
    this.lastSuccess = new Gauge({
      name: 'jwtgate_policy_last_reload_success',
      help: 'Whether the last policy reload succeeded (1) or was refused, the old policy kept (0); 1 after the start.',
      registers: [registry],
    })
    this.lastTimestamp = new Gauge({
      name: 'jwtgate_policy_last_reload_timestamp_seconds',
      help: 'When the last policy reload (or the start) ran, successful or not, in seconds since the epoch.',
      registers: [registry],
    })
    this.lastSuccess.set(1)
    this.lastTimestamp.set(Date.now() / 1000)
  }

  record(ok: boolean): void {
    this.total.inc({ result: ok ? 'success' : 'failure' })
    this.lastSuccess.set(ok ? 1 : 0)
    this.lastTimestamp.set(Date.now() / 1000)
  }
}

/**
 * `jwtgate_revocations_dropped_total`: memory-backend revocations lost by a reload that left the
 * memory backend. With `workers: N` the primary counts its own (every worker drops the same
 * entries; summing them would count each N times).
 */
export function revocationsDropped(registry: Registry): Counter {
  return new Counter({
    name: 'jwtgate_revocations_dropped_total',
    help: 'Revocations of the memory backend lost by a reload that left the memory backend (or dropped the revocation: section).',
    registers: [registry],
  })
}

const STATUS_CLASS: Record<number, string> = { 1: '1xx', 2: '2xx', 3: '3xx', 4: '4xx', 5: '5xx' }
