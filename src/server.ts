// A running gateway: the proxy and admin listeners, the live policy and its reloads, and the
// graceful shutdown. What `jwtgate serve` runs, and what the tests start.
import { createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import type { Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type pino from 'pino'
import type { Logger } from 'pino'
import type { FastifyInstance } from 'fastify'
import { Metrics } from './admin/metrics.js'
import { buildAdmin, readiness, type Readiness } from './admin/server.js'
import { buildGateway, type GatewayApp } from './gateway/app.js'
import { logRejectedReload, warnRestartOnly } from './lifecycle/live_policy.js'
import { createLogger } from './log.js'
import { loadPolicy, type CompiledPolicy } from './policy/compile.js'
import type { Env } from './policy/load.js'
import { commitRevocation } from './revocation/config.js'
import { startReloadedStore } from './revocation/store.js'

export interface StartOptions {
  policyFile: string
  /** The environment ${VAR} references read; read again on every reload. */
  env?: Env
  /** Where log lines go; stdout by default. */
  logDestination?: pino.DestinationStream
  /** Overrides the policy's listen address (tests use port 0). */
  listen?: { host?: string; port?: number }
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
  /** Loads the policy file again; keeps the old policy (and says why) when the new one is bad. */
  reload(): Promise<boolean>
  /** Readiness off, drain delay, stop accepting, finish in-flight requests, close. */
  shutdown(): Promise<void>
  /** Closes at once (tests). */
  close(): Promise<void>
}

export { loadPolicy }

export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const logger = createLogger('info', options.logDestination, { worker: options.worker })
  const policy = loadPolicy(options.policyFile, logger, options.env)
  logger.level = policy.logLevel
  const metrics = new Metrics()
  const gateway = await buildGateway(policy, logger, metrics)
  let loadedAt = new Date()
  let shuttingDown = false
  metrics.instrument(policy.issuers.values())
  // The first key fetches run before we listen, each bounded by its timeout; an IdP that is
  // down does not stop the start: its routes answer 503 until its keys arrive. So does the
  // revocation list's first load: until it is loaded, tokens get 503.
  await Promise.all([...[...policy.issuers.values()].map((issuer) => issuer.start()), policy.revocation?.store.start()])
  metrics.policyLoaded(policy.hash, policy.issuers.values(), () => gateway.policy.auth.tokens.size)

  let url: string
  try {
    await options.beforeListen?.(gateway)
    url = await listen(gateway.app, options.listen?.host ?? policy.listen.host, options.listen?.port ?? policy.listen.port)
  } catch (err) {
    // Its Redis connections would keep the process alive.
    await policy.revocation?.store.stop()
    throw err
  }
  logger.info({ address: url, policy: policy.file, policy_hash: policy.hash.slice(0, 12), routes: policy.routes.size }, `jwtgate listening on ${url}`)
  let admin: FastifyInstance | undefined
  let adminUrl: string | undefined
  const view = { policy: () => gateway.policy, loadedAt: () => loadedAt, shuttingDown: () => shuttingDown }
  if (policy.admin && options.admin !== false) {
    admin = buildAdmin(view, metrics, logger)
    adminUrl = await listen(admin, options.admin?.host ?? policy.admin.host, options.admin?.port ?? policy.admin.port)
    logger.info({ address: adminUrl }, `jwtgate admin on ${adminUrl}`)
  }

  // Reloads run one at a time, in order.
  let reloading: Promise<boolean> = Promise.resolve(true)
  async function reloadNow(): Promise<boolean> {
    const current = gateway.policy
    let next: CompiledPolicy
    try {
      next = loadPolicy(options.policyFile, logger, options.env ?? process.env, current)
    } catch (err) {
      // Whatever went wrong, the running policy stays: a reload must never take the gateway down.
      logRejectedReload(err, options.policyFile, current, logger)
      metrics.reloaded(false)
      return false
    }
    const added = [...next.issuers.values()].filter((i) => current.issuers.get(i.name) !== i)
    metrics.instrument(added)
    const oldStore = current.revocation?.store
    const newStore = next.revocation?.store
    const [revocationLoaded] = await Promise.all([startReloadedStore(oldStore, newStore, logger), ...added.map((i) => i.start())])
    if (!revocationLoaded) {
      for (const i of added) i.stop()
      metrics.reloaded(false)
      return false
    }
    // One assignment: requests already running keep the policy they started with.
    gateway.policy = next
    commitRevocation(next.revocation)
    gateway.pools.update(next)
    applyListenTls(gateway, current, next, logger)
    loadedAt = new Date()
    logger.level = next.logLevel
    metrics.policyLoaded(next.hash, next.issuers.values(), () => gateway.policy.auth.tokens.size)
    metrics.reloaded(true)
    for (const old of current.issuers.values()) if (next.issuers.get(old.name) !== old) old.stop()
    if (oldStore && oldStore !== newStore) void oldStore.stop()
    // A cluster's primary says it once for all its workers.
    if (options.worker === undefined) warnRestartOnly(current, next, logger)
    logger.info({ policy_hash: next.hash.slice(0, 12), kept_issuers: next.issuers.size - added.length, routes: next.routes.size }, 'policy reloaded')
    return true
  }
  const reload = () => (reloading = reloading.then(reloadNow, reloadNow))

  const watcher = options.watch ? watchPolicy(options.policyFile, () => gateway.policy, () => void reload(), logger) : undefined

  let closed: Promise<void> | undefined
  const closeAll = (timeoutMs = 0) => (closed ??= (async () => {
    watcher?.close()
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
    const deadline = timeoutMs > 0 ? setTimeout(() => {
      logger.warn({ timeout_ms: timeoutMs }, 'shutdown timeout: closing the connections still open')
      closeEverything()
    }, timeoutMs) : undefined
    if (timeoutMs <= 0) for (const socket of gateway.upgraded) socket.destroy()
    try {
      await gateway.app.close()
    } finally {
      clearInterval(sweeper)
      clearTimeout(deadline)
    }
    await admin?.close()
    for (const issuer of gateway.policy.issuers.values()) issuer.stop()
    await gateway.policy.revocation?.store.stop()
  })())

  return {
    url,
    port: Number(new URL(url).port),
    adminUrl,
    gateway,
    logger,
    metrics,
    readiness: () => readiness(view),
    reload,
    async shutdown() {
      if (shuttingDown) return closed
      shuttingDown = true
      const { drainDelayMs, timeoutMs } = gateway.policy.shutdown
      logger.info({ drain_delay_ms: drainDelayMs }, 'shutting down: readiness off, still accepting during the drain delay')
      // Endpoint controllers need time to see /readyz fail and stop sending traffic here.
      await sleep(drainDelayMs)
      logger.info('closing the listener; finishing requests in flight')
      await closeAll(timeoutMs)
      logger.info('shut down')
    },
    close: () => closeAll(),
  }
}

export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port })
  const address = app.server.address() as AddressInfo
  const scheme = 'setSecureContext' in app.server ? 'https' : 'http'
  return `${scheme}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
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
  ;(server as HttpsServer).setSecureContext({ cert: next.listen.tls.cert, key: next.listen.tls.key })
  logger.info('listener certificate reloaded')
}

/**
 * Kubernetes updates a mounted ConfigMap by swapping a symlink in the file's directory, so the
 * directory is watched, not the file; the file's content hash decides whether anything changed.
 * Directories of secret files the policy names are watched too.
 */
export function watchPolicy(file: string, policy: () => CompiledPolicy, onChange: () => void, logger: Logger): { close(): void } {
  const watchers = new Map<string, FSWatcher>()
  let lastSeen = fingerprint(file, policy())
  let timer: NodeJS.Timeout | undefined
  const check = () => {
    const now = fingerprint(file, policy())
    if (now === lastSeen) return
    lastSeen = now
    onChange()
  }
  const dirs = () => new Set([path.dirname(path.resolve(file)), ...secretFiles(policy()).map((f) => path.dirname(f))])
  const sync = () => {
    for (const dir of dirs()) {
      if (watchers.has(dir)) continue
      try {
        const w = watch(dir, () => {
          clearTimeout(timer)
          // Editors and kubelet write in several steps; settle first.
          timer = setTimeout(() => { check(); sync() }, 200)
          timer.unref()
        })
        w.unref()
        watchers.set(dir, w)
      } catch (err) {
        logger.warn({ dir, error: (err as Error).message }, 'cannot watch for policy changes; SIGHUP still reloads')
      }
    }
  }
  sync()
  return { close: () => { clearTimeout(timer); for (const w of watchers.values()) w.close() } }
}

function secretFiles(policy: CompiledPolicy): string[] {
  type TlsFiles = { ca_file?: string; cert_file?: string; key_file?: string }
  const doc = policy.redacted as { issuers?: Record<string, { secret_file?: string }>; revocation?: { admin_token_file?: string }; listen: { tls?: TlsFiles }; upstreams: Record<string, { tls?: TlsFiles }> }
  const files = Object.values(doc.issuers ?? {}).map((i) => i.secret_file)
  files.push(doc.revocation?.admin_token_file)
  // Certificates too: cert-manager renews them in place, and a reload picks the new ones up.
  for (const tls of [doc.listen.tls, ...Object.values(doc.upstreams).map((u) => u.tls)]) files.push(tls?.ca_file, tls?.cert_file, tls?.key_file)
  return files.flatMap((f) => (f ? [path.resolve(path.dirname(policy.file), f)] : []))
}

function fingerprint(file: string, policy: CompiledPolicy): string {
  const hash = createHash('sha256')
  for (const f of [file, ...secretFiles(policy)]) {
    try {
      hash.update(readFileSync(f))
    } catch {
      hash.update('missing')
    }
  }
  return hash.digest('hex')
}
