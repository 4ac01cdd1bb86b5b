// The admin listener: liveness, readiness, metrics, the loaded policy and the status page. It
// never proxies, and the proxy listener never serves these paths.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { CompiledPolicy } from '../policy/compile.js'
import type { Metrics } from './metrics.js'
import { revocationRoutes, revokeHere, type Revoke } from './revocations.js'
import { requireAdminToken } from './admin_access.js'
import { processStatus, statusDocument, type ProcessParts, type StatusDocument } from './status.js'
import { securityHeaders, statusRoutes } from './status_routes.js'
import { NO_ROUTE_SCHEMAS } from '../http/route_schemas.js'

/** The last reload's outcome, as GET /config shows it: a refused one with its problems. */
export interface ReloadOutcome {
  at: Date
  ok: boolean
  /** file:line:col problems of a refused reload; empty when it succeeded. */
  problems: string[]
}

export interface AdminView {
  policy(): CompiledPolicy
  loadedAt(): Date
  lastReload(): ReloadOutcome | null
  shuttingDown(): boolean
  /** Why the upstreams' health checks keep the gateway from being ready (../proxy/upstream_health.ts). */
  upstreams?(): string[]
}

/** Why the gateway should not get traffic (empty: ready), and what is ready but impaired. */
export interface Readiness {
  reasons: string[]
  degraded: string[]
}

/**
 * What the admin listener answers from. One process answers from itself (buildAdmin); the
 * primary of `workers: N` asks its workers (../cluster/primary_admin.ts).
 */
export interface AdminSource {
  policy(): CompiledPolicy
  loadedAt(): Date
  lastReload(): ReloadOutcome | null
  readiness(): Promise<Readiness>
  /** The exposition text; throws when it cannot be had (a worker did not answer). */
  metrics(): Promise<{ contentType: string; text: string }>
  revoke: Revoke
  /** The status page's data (./status.ts). */
  status(): Promise<StatusDocument>
}

export function buildAdmin(view: AdminView, metrics: Metrics, logger: Logger, parts: ProcessParts): FastifyInstance {
  return adminListener(
    {
      policy: view.policy,
      loadedAt: view.loadedAt,
      lastReload: view.lastReload,
      readiness: async () => readiness(view),
      metrics: async () => ({ contentType: metrics.registry.contentType, text: await metrics.registry.metrics() }),
      revoke: revokeHere,
      status: async () =>
        statusDocument({
          policy: view.policy(),
          loadedAt: view.loadedAt(),
          lastReload: view.lastReload(),
          readiness: readiness(view),
          startedAt: parts.startedAt,
          parts: [{ worker: 0, state: 'serving', status: await processStatus(parts) }],
          clustered: false,
          recentRefusals: view.policy().admin?.status.recentRefusals ?? 0,
        }),
    },
    logger,
  )
}

export function adminListener(source: AdminSource, logger: Logger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger.child({ listener: 'admin' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    schemaController: NO_ROUTE_SCHEMAS,
  })

  securityHeaders(app)
  requireAdminToken(app, () => source.policy().admin)
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_request, reply) => {
    const { reasons, degraded } = await source.readiness()
    reply.header('cache-control', 'no-store')
    if (reasons.length) return reply.code(503).send({ status: 'not_ready', reasons })
    // serve_stale with the revocation backend away: still ready, but said.
    return reply.send(degraded.length ? { status: 'ready', degraded } : { status: 'ready' })
  })

  revocationRoutes(app, () => source.policy(), source.revoke)
  statusRoutes(app, source.policy, source.status)

  app.get('/metrics', async (request, reply) => {
    let scraped: Awaited<ReturnType<AdminSource['metrics']>>
    try {
      scraped = await source.metrics()
    } catch (err) {
      request.log.warn({ error: (err as Error).message }, 'metrics unavailable')
      return reply.code(503).send({ error: 'metrics_unavailable', message: (err as Error).message })
    }
    return reply.type(scraped.contentType).send(scraped.text)
  })

  app.get('/config', async () => {
    const policy = source.policy()
    return {
      file: policy.file,
      hash: policy.hash,
      loaded_at: source.loadedAt().toISOString(),
      last_reload: lastReloadShown(source.lastReload()),
      policy: policy.redacted,
    }
  })
  return app
}

/** This process's readiness. */
export function readiness(view: AdminView): Readiness {
  const reasons = notReady(view)
  const degraded = reasons.length ? undefined : view.policy().revocation?.store.readiness().degraded
  return { reasons, degraded: degraded ? [degraded] : [] }
}

/** Why the gateway should not get traffic yet (or any more); empty when it should. */
export function notReady(view: AdminView): string[] {
  if (view.shuttingDown()) return ['shutting down']
  const reasons: string[] = []
  for (const issuer of view.policy().requiredForReadiness) {
    if (!issuer.ready) reasons.push(`issuer ${issuer.name}: no signing keys yet${issuer.jwks?.status.lastError ? ` (${issuer.jwks.status.lastError})` : ''}`)
  }
  const revocation = view.policy().revocation?.store.readiness().notReady
  if (revocation) reasons.push(revocation)
  reasons.push(...(view.upstreams?.() ?? []))
  return reasons
}

/** The last reload in /config: null before the first; a refused one lists its problems, since the running policy is the older one. */
function lastReloadShown(outcome: ReloadOutcome | null): Record<string, unknown> | null {
  if (!outcome) return null
  return { at: outcome.at.toISOString(), result: outcome.ok ? 'success' : 'failure', ...(outcome.ok ? {} : { problems: outcome.problems }) }
}
