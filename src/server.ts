// A running gateway: the proxy and admin listeners, the live policy and its reloads, and the
// graceful shutdown. What `jwtgate serve` runs (alone, or in each worker of a cluster), and what
// the tests start.
import type { Server as HttpsServer } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import type pino from 'pino'
import type { Logger } from 'pino'
import type { FastifyInstance } from 'fastify'
import { Metrics } from './admin/metrics.js'
import { buildAdmin, readiness, type Readiness } from './admin/server.js'
import { buildGateway, type GatewayApp } from './gateway/app.js'
import { listen } from './lifecycle/listen.js'
import { LivePolicy } from './lifecycle/live_policy.js'
import { Shutdown } from './lifecycle/shutdown.js'
import { Reloads, watchPolicy } from './lifecycle/watch.js'
import { createLogger, lineFormat, outputLosses } from './log.js'
import { compilePolicy, loadPolicy, type CompiledPolicy } from './policy/compile.js'
import { readPolicySource, type Env, type PolicySource } from './policy/load.js'
import { UpstreamChecks } from './proxy/upstream_health.js'
import { processStatus, type ProcessParts, type ProcessStatus } from './admin/status.js'
import { RouteWindows } from './admin/route_figures.js'
import { tracingWanted } from './tracing/tracing.js'

export interface StartOptions {
  policyFile: string
  /** The policy file read already (`serve` reads it once, to learn `workers`); read here when not. */
  source?: PolicySource
  /** The environment ${VAR} references read; read again on every reload. */
  env?: Env
  /** Where log lines go; stdout by default. */
  logDestination?: pino.DestinationStream
  /**
   * The OTEL_* variables that decide whether spans are exported (the OpenTelemetry SDK reads
   * process.env itself, so this is process.env unless a test says otherwise).
   */
  tracingEnv?: NodeJS.ProcessEnv
  /**
   * Overrides the policy's listen address (tests use port 0). `reusePort`: a cluster worker's own
   * socket on a port the workers share through SO_REUSEPORT (src/cluster/primary.ts).
   */
  listen?: { host?: string; port?: number; reusePort?: boolean }
  /** Overrides the policy's admin address (tests use port 0); false: no admin listener (a cluster worker's primary serves it). */
  admin?: { host?: string; port?: number } | false
  /** Reload when the policy file (or a secret file it names) changes. On for `serve`. */
  watch?: boolean
  /** A cluster worker's number: written on its log lines; its primary reports restart-only changes. */
  worker?: number
  /** Runs once the policy is loaded and its stores started, before the listener opens. */
  beforeListen?: (gateway: GatewayApp) => Promise<void>
}

export interface RunningGateway {
  /** http://host:port the proxy listens on. */
  url: string
  port: number
  /** http://host:port of the admin listener, if any. */
  adminUrl: string | undefined
  gateway: GatewayApp
  logger: Logger
  metrics: Metrics
  /** This process's readiness, as /readyz reports it. */
  readiness(): Readiness
  /** This process's part of the status page (a worker's answer to its primary). */
  status(): Promise<ProcessStatus>
  /** Loads the policy file again; keeps the old policy (and says why) when the new one is bad. */
  reload(): Promise<boolean>
  /** Readiness off, drain delay, stop accepting, finish in-flight requests, close. */
  shutdown(): Promise<void>
  /** Closes at once (tests). */
  close(): Promise<void>
}

export { loadPolicy }

export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const startedAt = Date.now()
  const env = options.env ?? process.env
  const source = options.source ?? readPolicySource(options.policyFile, env)
  // The line format is the logger's from its start: a reload that changes it says so (lifecycle/live_policy.ts).
  const logger = createLogger('info', options.logDestination, { worker: options.worker, ...lineFormat(source.document) })
  const metrics = new Metrics()
  metrics.watchLog(outputLosses(logger))
  const live = new LivePolicy(compilePolicy(source, logger), {
    file: options.policyFile,
    env,
    logger,
    verifiesTokens: true,
    // A cluster's primary says it once for all its workers.
    warnsRestartOnly: options.worker === undefined,
    onIssuersAdded: (issuers) => metrics.instrument(issuers),
    onCommit: (next, previous) => applyReload(gateway, metrics, next, previous, logger, checks),
    onRevocationsDropped: (count) => metrics.revocationsDropped(count),
  })
  const policy = live.current
  // Loaded only when configured: without the OTEL_* variables no OpenTelemetry module is loaded.
  const tracing = tracingWanted(options.tracingEnv ?? process.env)
    ? (await import('./tracing/otel.js')).startTracing(logger, { worker: options.worker })
    : undefined
  const gateway = await buildGateway(policy, logger, metrics, tracing)
  // The upstreams' health checks run beside the key fetches, so both are ready together.
  const checks = new UpstreamChecks(logger)
  checks.follow(policy.upstreams)
  // The status page's five-minute figures: a copy of the counters every 30 s.
  const windows = new RouteWindows(() => metrics.routeTotals())
  windows.start()
  const parts: ProcessParts = {
    policy: () => live.current,
    metrics,
    windows,
    pools: () => gateway.pools.stats(),
    checks: () => checks.details(),
    startedAt,
  }
  metrics.watchUpstreams(() => checks.states())
  metrics.watchRevocation(() => {
    const store = live.current.revocation?.store
    return store && { backend: store.settings.backend, state: store.currentState }
  })
  await live.start()
  metrics.policyLoaded(policy.hash, policy.issuers.values(), () => gateway.policy.auth.tokens.size)

  let url: string
  try {
    await options.beforeListen?.(gateway)
    url = await listen(gateway.app, options.listen?.host ?? policy.listen.host, options.listen?.port ?? policy.listen.port, 'proxy', options.listen?.reusePort)
  } catch (err) {
    // Its Redis connections would keep the process alive.
    checks.stop()
    windows.stop()
    await live.stop()
    await tracing?.shutdown(0)
    throw err
  }
  logger.info({ address: url, policy: policy.file, policy_hash: policy.hash.slice(0, 12), routes: policy.routes.size }, `jwtgate listening on ${url}`)
  let admin: FastifyInstance | undefined
  let adminUrl: string | undefined
  const shutdown = new Shutdown({
    logger,
    live,
    drain: () => sleep(live.current.shutdown.drainDelayMs),
    closeProxy: (timeoutMs) => closeProxy(gateway, timeoutMs, logger),
    watcher: () => watcher,
    admin: () => admin,
    upstreamChecks: checks,
    tracing,
  })
  const view = {
    policy: () => live.current,
    loadedAt: () => live.loadedAt,
    lastReload: () => live.lastReload,
    shuttingDown: () => shutdown.started,
    upstreams: () => checks.notReady(),
  }
  if (policy.admin && options.admin !== false) {
    admin = buildAdmin(view, metrics, logger, parts)
    try {
      adminUrl = await listen(admin, options.admin?.host ?? policy.admin.host, options.admin?.port ?? policy.admin.port, 'admin')
    } catch (err) {
      // The proxy listener and the stores would keep the process alive.
      await shutdown.now()
      throw err
    }
    logger.info({ address: adminUrl }, `jwtgate admin on ${adminUrl}`)
  }

  // Coalesced (lifecycle/watch.ts): a file change and a SIGHUP together reload once.
  const reloads = new Reloads(
    options.policyFile,
    () => live.current,
    async () => {
      const ok = await live.reload()
      metrics.reloaded(ok)
      return ok
    },
  )
  const reload = () => reloads.request()
  const watcher = options.watch ? watchPolicy(options.policyFile, () => live.current, reloads, logger) : undefined

  return {
    url,
    port: Number(new URL(url).port),
    adminUrl,
    gateway,
    logger,
    metrics,
    readiness: () => readiness(view),
    status: () => processStatus(parts),
    reload,
    shutdown: () => shutdown.graceful().finally(() => windows.stop()),
    close: () => shutdown.now().finally(() => windows.stop()),
  }
}

/** The gateway takes the reloaded policy: new requests use it, and the listener its certificate. */
function applyReload(gateway: GatewayApp, metrics: Metrics, next: CompiledPolicy, previous: CompiledPolicy, logger: Logger, checks: UpstreamChecks): void {
  gateway.policy = next
  gateway.pools.update(next)
  checks.follow(next.upstreams)
  applyListenTls(gateway, previous, next, logger)
  metrics.policyLoaded(next.hash, next.issuers.values(), () => gateway.policy.auth.tokens.size)
  const kept = [...next.issuers.values()].filter((issuer) => previous.issuers.get(issuer.name) === issuer).length
  logger.info({ policy_hash: next.hash.slice(0, 12), kept_issuers: kept, routes: next.routes.size }, 'policy reloaded')
}

/**
 * Stops accepting and waits for the requests in flight; after `timeoutMs` (at once for 0) the
 * connections still open are closed.
 */
async function closeProxy(gateway: GatewayApp, timeoutMs: number, logger: Logger): Promise<void> {
  if (timeoutMs > 0) logger.info('closing the listener; finishing requests in flight')
  gateway.closing = true
  const server = gateway.app.server
  // Node's close() only ends connections idle at that moment; a keep-alive connection whose
  // request finishes later would hold the close open until its keep-alive timeout.
  const sweeper = setInterval(() => server.closeIdleConnections(), 100)
  const closeEverything = () => {
    server.closeAllConnections()
    // WebSocket tunnels left the HTTP server's connection list at the upgrade.
    for (const socket of gateway.upgraded) socket.destroy()
  }
  const deadline =
    timeoutMs > 0
      ? setTimeout(() => {
          logger.warn({ timeout_ms: timeoutMs }, 'shutdown timeout: closing the connections still open')
          closeEverything()
        }, timeoutMs)
      : undefined
  if (timeoutMs <= 0) for (const socket of gateway.upgraded) socket.destroy()
  try {
    await gateway.app.close()
  } finally {
    clearInterval(sweeper)
    clearTimeout(deadline)
  }
}

/**
 * A reloaded certificate (cert-manager rotates the files; the watcher reloads) is used for new
 * connections from now on. Turning TLS on or off needs a new listener: at the next restart.
 */
function applyListenTls(gateway: GatewayApp, current: CompiledPolicy, next: CompiledPolicy, logger: Logger): void {
  const server = gateway.app.server
  if (!next.listen.tls || !('setSecureContext' in server)) {
    if (next.listen.tls || current.listen.tls) logger.warn('turning listen.tls on or off takes effect at the next restart')
    return
  }
  if (next.listen.tls.hash === current.listen.tls?.hash) return
  const ca = next.listen.tls.clientCertificates?.ca
  ;(server as HttpsServer).setSecureContext({ cert: next.listen.tls.cert, key: next.listen.tls.key, ...(ca ? { ca } : {}) })
  logger.info('listener certificate reloaded')
}
