// An upstream's `health:` check: GET a path of the app in the background, so that /readyz says
// "not ready" while the app behind the gateway cannot answer. A sidecar's app usually binds
// 127.0.0.1, where the kubelet cannot probe it; without this the pod is Ready as soon as the
// keys load, and a slow-starting app gets 502s in every rollout.
//
// Like Envoy's HTTP health check: a fresh upstream is healthy after one passed check,
// `unhealthy_threshold` failures in a row make a healthy one unhealthy and `healthy_threshold`
// passes in a row make it healthy again. A check passes on 200-399 (as a kubelet httpGet probe),
// redirects not followed.
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Logger } from 'pino'
import { defaultsOf } from '../policy/defaults.js'
import { durationMs } from '../policy/duration.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { UpstreamHealthSchema, type UpstreamHealthDocument } from '../policy/schema.js'
import type { UpstreamTls } from '../policy/tls_files.js'

export interface UpstreamHealthRule {
  /** Absolute path (and query) on the upstream's origin; the URL's base path is not prefixed. */
  readonly path: string
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly healthyThreshold: number
  readonly unhealthyThreshold: number
}

/** What a check needs of its upstream (../proxy/upstream.ts). */
export interface CheckedUpstream {
  readonly name: string
  readonly origin: string
  readonly tls: UpstreamTls | null
  /** Changes when origin, connections or TLS material do. */
  readonly poolKey: string
  readonly health: UpstreamHealthRule | null
}

const DEFAULT = defaultsOf(UpstreamHealthSchema, ['interval', 'timeout', 'healthy_threshold', 'unhealthy_threshold'])
const MIN_INTERVAL_MS = 100

/** `upstreams.<name>.health`: null when absent, undefined after reporting a problem. */
export function compileUpstreamHealth(spec: UpstreamHealthDocument | undefined, at: DocPath, problem: OnProblem): UpstreamHealthRule | null | undefined {
  if (!spec) return null
  const rule: UpstreamHealthRule = {
    path: spec.path,
    intervalMs: durationMs(spec.interval ?? DEFAULT.interval),
    timeoutMs: durationMs(spec.timeout ?? DEFAULT.timeout),
    healthyThreshold: spec.healthy_threshold ?? DEFAULT.healthy_threshold,
    unhealthyThreshold: spec.unhealthy_threshold ?? DEFAULT.unhealthy_threshold,
  }
  let ok = true
  if (rule.intervalMs < MIN_INTERVAL_MS) {
    problem([...at, 'interval'], `health.interval must be at least ${MIN_INTERVAL_MS}ms`)
    ok = false
  }
  // A check without a bound would hang on an app that accepts and never answers.
  if (rule.timeoutMs <= 0) {
    problem([...at, 'timeout'], 'health.timeout must be more than 0')
    ok = false
  }
  return ok ? rule : undefined
}

export interface UpstreamCheckDetails {
  upstream: string
  path: string
  /** undefined until the first check has an outcome. */
  healthy: boolean | undefined
  lastCheckAt: number | undefined
  lastPassed: boolean | undefined
  /** What the last failed check found. */
  lastProblem: string | undefined
}

/** One upstream's check and what it found. */
class HealthCheck {
  /** undefined until the first check has an outcome. */
  healthy: boolean | undefined
  lastProblem: string | undefined
  /** When the last check ended, and whether it passed (the state changes only after a streak). */
  lastCheckAt: number | undefined
  lastPassed: boolean | undefined
  private streak = 0
  private timer: NodeJS.Timeout | undefined
  private inFlight: (() => void) | undefined
  private stopped = false

  constructor(
    readonly upstream: CheckedUpstream,
    readonly rule: UpstreamHealthRule,
    private readonly log: Logger,
  ) {}

  /** Everything the check's outcome depends on: a reload that changes none of it keeps the check. */
  static key(upstream: CheckedUpstream, rule: UpstreamHealthRule): string {
    return `${upstream.poolKey}\n${JSON.stringify(rule)}`
  }

  start(): void {
    void this.run()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.inFlight?.()
  }

  /** Why this upstream keeps the gateway from being ready; undefined when it does not. */
  notReady(): string | undefined {
    if (this.healthy) return undefined
    const where = `GET ${this.rule.path}`
    if (this.healthy === undefined) return `upstream ${this.upstream.name}: not checked yet (${where})`
    return `upstream ${this.upstream.name}: unhealthy (${where}: ${this.lastProblem})`
  }

  private async run(): Promise<void> {
    if (this.stopped) return
    const problem = await this.probe()
    if (this.stopped) return
    this.record(problem)
    this.timer = setTimeout(() => void this.run(), this.rule.intervalMs)
    // The check never keeps a process alive; shutdown stops it anyway.
    this.timer.unref()
  }

  private record(problem: string | undefined): void {
    const was = this.healthy
    this.lastCheckAt = Date.now()
    this.lastPassed = !problem
    if (problem) this.lastProblem = problem
    const fields = { upstream: this.upstream.name, path: this.rule.path }
    if (was === undefined) {
      // A fresh upstream: one outcome decides (it is not ready until then anyway).
      this.healthy = !problem
      this.streak = 0
      if (problem) this.log.warn({ ...fields, problem }, 'upstream unhealthy')
      else this.log.info(fields, 'upstream healthy')
      return
    }
    if (!problem === was) {
      this.streak = 0
      return
    }
    this.streak++
    if (this.streak < (was ? this.rule.unhealthyThreshold : this.rule.healthyThreshold)) return
    this.healthy = !was
    this.streak = 0
    if (problem) this.log.warn({ ...fields, problem, failures: this.rule.unhealthyThreshold }, 'upstream unhealthy')
    else this.log.info(fields, 'upstream healthy again')
  }

  /** One check: undefined when it passed, else what went wrong. */
  private probe(): Promise<string | undefined> {
    const { origin, tls } = this.upstream
    const url = new URL(this.rule.path, origin)
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    return new Promise((resolve) => {
      let timeout: NodeJS.Timeout | undefined
      const done = (outcome: string | undefined) => {
        clearTimeout(timeout)
        this.inFlight = undefined
        resolve(outcome)
      }
      // A new connection each time, as the kubelet's probes: a pool could hide a listener gone.
      let req: ReturnType<typeof send>
      try {
        req = send(url, {
          method: 'GET',
          agent: false,
          headers: { 'user-agent': 'jwtgate-health-check', connection: 'close' },
          ...(tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : {}),
        })
      } catch (err) {
        // What Node refuses synchronously (rather than as an 'error' event) fails the check too.
        return done((err as Error).message)
      }
      timeout = setTimeout(() => req.destroy(new Error(`no answer within ${this.rule.timeoutMs}ms`)), this.rule.timeoutMs)
      this.inFlight = () => req.destroy(new Error('stopped'))
      req.on('response', (res: IncomingMessage) => {
        const status = res.statusCode ?? 0
        // Only the status matters; the body is not read.
        res.destroy()
        done(status >= 200 && status < 400 ? undefined : `status ${status}`)
      })
      req.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
      req.end()
    })
  }
}

/**
 * The checks of the live policy's upstreams. `follow` each policy that goes live: an upstream
 * whose address, TLS and `health:` are unchanged keeps its check and its state.
 */
export class UpstreamChecks {
  private readonly checks = new Map<string, { key: string; check: HealthCheck }>()
  private stopped = false

  constructor(private readonly log: Logger) {}

  follow(upstreams: ReadonlyMap<string, CheckedUpstream>): void {
    if (this.stopped) return
    for (const [name, { key, check }] of this.checks) {
      const next = upstreams.get(name)
      if (next?.health && HealthCheck.key(next, next.health) === key) continue
      check.stop()
      this.checks.delete(name)
    }
    for (const upstream of upstreams.values()) {
      if (!upstream.health || this.checks.has(upstream.name)) continue
      const check = new HealthCheck(upstream, upstream.health, this.log)
      this.checks.set(upstream.name, { key: HealthCheck.key(upstream, upstream.health), check })
      check.start()
    }
  }

  /** Why the gateway should not get traffic because of its upstreams; empty when it should. */
  notReady(): string[] {
    return [...this.checks.values()].flatMap(({ check }) => check.notReady() ?? [])
  }

  /** Each checked upstream, healthy or not (not checked yet counts as not), for the metric. */
  states(): Array<{ upstream: string; healthy: boolean }> {
    return [...this.checks.values()].map(({ check }) => ({ upstream: check.upstream.name, healthy: check.healthy === true }))
  }

  /** Each check as the status page shows it. */
  details(): UpstreamCheckDetails[] {
    return [...this.checks.values()].map(({ check }) => ({
      upstream: check.upstream.name,
      path: check.rule.path,
      healthy: check.healthy,
      lastCheckAt: check.lastCheckAt,
      lastPassed: check.lastPassed,
      lastProblem: check.lastProblem,
    }))
  }

  stop(): void {
    this.stopped = true
    for (const { check } of this.checks.values()) check.stop()
    this.checks.clear()
  }
}
