// The admin listener: liveness, readiness, metrics and the loaded policy. It never proxies, and
// the proxy listener never serves these paths.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { CompiledPolicy } from '../policy/compile.js'
import { revocationRoutes } from '../revocation/admin.js'
import type { Metrics } from './metrics.js'

export interface AdminView {
  policy(): CompiledPolicy
  loadedAt(): Date
  shuttingDown(): boolean
}

export function buildAdmin(view: AdminView, metrics: Metrics, logger: Logger): FastifyInstance {
  const app = Fastify({ loggerInstance: logger.child({ listener: 'admin' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })

  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_request, reply) => {
    const reasons = notReady(view)
    if (reasons.length) return reply.code(503).header('cache-control', 'no-store').send({ status: 'not_ready', reasons })
    // serve_stale with the revocation backend away: still ready, but said.
    const degraded = view.policy().revocation?.store.readiness().degraded
    return reply.header('cache-control', 'no-store').send(degraded ? { status: 'ready', degraded: [degraded] } : { status: 'ready' })
  })

  revocationRoutes(app, () => view.policy())

  app.get('/metrics', async (_request, reply) => {
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  app.get('/config', async () => {
    const policy = view.policy()
    return { file: policy.file, hash: policy.hash, loaded_at: view.loadedAt().toISOString(), policy: policy.redacted }
  })
  return app
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
  return reasons
}
