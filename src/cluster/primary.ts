// `jwtgate serve` with `workers: N` (N > 1): this process becomes the node:cluster primary. It
// loads the policy first (a bad one exits before anything is forked), forks the workers that
// serve the proxy listener, serves the admin listener itself, reloads on SIGHUP or a file change,
// replaces a worker that dies, and on SIGTERM/SIGINT shuts every worker down gracefully.
//
// The proxy port: by default (`listen.reuse_port`) each worker opens a socket of its own on it
// with SO_REUSEPORT, and the kernel spreads new connections over the workers' sockets by a hash
// of their addresses; the primary accepts nothing. With `reuse_port: false` the socket is
// node:cluster's with its default scheduling on Linux, round-robin: the primary accepts each
// connection and hands it to the next worker over IPC (costlier per connection: measured in
// `npm run bench`). Node's other cluster policy (SCHED_NONE, every worker accepting on one
// shared socket) is not offered: the kernel wakes the workers unevenly (Node's cluster docs).
import cluster from 'node:cluster'
import { type AddressInfo, createServer } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import type { Logger } from 'pino'
import { ReloadMetrics, revocationsDropped } from '../admin/metrics.js'
import { adminListener } from '../admin/server.js'
import { listen, ListenError } from '../lifecycle/listen.js'
import { LivePolicy } from '../lifecycle/live_policy.js'
import { logStartupError } from '../lifecycle/policy_error.js'
import { Shutdown } from '../lifecycle/shutdown.js'
import { untilSignalled } from '../lifecycle/signals.js'
import { Reloads, watchPolicy } from '../lifecycle/watch.js'
import { createLogger, lineFormat } from '../log.js'
import { compilePolicy } from '../policy/compile.js'
import type { PolicySource } from '../policy/load.js'
import { REUSE_PORT_ENV, type Question } from './ipc.js'
import { clusterAdmin } from './primary_admin.js'
import { WorkerSlots } from './slots.js'

// A worker's reload may fetch a new issuer's keys (bounded by its jwks.timeout).
const RELOAD_TIMEOUT_MS = 30_000
// Beyond drain_delay + timeout: for a worker to close its stores and exit.
const EXIT_MARGIN_MS = 3000

/** Runs the cluster on the policy `serve` read; exits 1 (said why) when it does not compile. */
export async function runPrimary(source: PolicySource): Promise<number> {
  const startedAt = Date.now()
  // The workers write to the same standard output.
  const format = lineFormat(source.document)
  const logger = createLogger('info', undefined, { sharedStdout: true, ...format })
  const registry = new Registry()
  const dropped = revocationsDropped(registry)
  let live: LivePolicy
  try {
    // The primary's own copy of the policy: what /config shows, the revocation store POST
    // /revocations writes through, and the judge of a reload before any worker sees it. It
    // verifies no token, so its issuers never fetch keys.
    live = new LivePolicy(compilePolicy(source, logger), {
      file: source.file,
      env: process.env,
      logger,
      verifiesTokens: false,
      warnsRestartOnly: true,
      onRevocationsDropped: (count) => dropped.inc(count),
    })
  } catch (err) {
    return logStartupError(err, format)
  }
  await live.start()
  const reloads = new ReloadMetrics(registry)

  // 'advanced': structured clone, so a metric's Infinity or NaN crosses the channel intact.
  cluster.setupPrimary({ serialization: 'advanced' })
  let workerEnv: Record<string, string>
  try {
    workerEnv = live.current.listen.reusePort ? { [REUSE_PORT_ENV]: String(await sharedPort(live.current.listen)) } : {}
  } catch (err) {
    await live.stop()
    return logStartupError(err, format)
  }
  const slots = new WorkerSlots(live.current.workers, logger, (_slot, question) => answerWorker(live, question), workerEnv)
  let admin: FastifyInstance | undefined
  // Each worker drains for itself once told; the primary waits for them all, then kills the late.
  const { drainDelayMs, timeoutMs } = live.current.shutdown
  const workersGone = drainDelayMs + timeoutMs + EXIT_MARGIN_MS
  const shutdown = new Shutdown({
    logger,
    live,
    drain: async () => {},
    closeProxy: (timeout) => {
      logger.info('telling every worker to drain and exit')
      return slots.stop(timeout > 0 ? workersGone : 0)
    },
    watcher: () => watcher,
    admin: () => admin,
  })
  const view = {
    policy: () => live.current,
    loadedAt: () => live.loadedAt,
    lastReload: () => live.lastReload,
    shuttingDown: () => shutdown.started,
    registry,
    startedAt,
  }
  const adminAddress = live.current.admin
  if (adminAddress) {
    admin = adminListener(clusterAdmin(view, slots), logger)
    let adminUrl: string
    try {
      adminUrl = await listen(admin, adminAddress.host, adminAddress.port, 'admin')
    } catch (err) {
      await shutdown.now()
      return logStartupError(err, format)
    }
    logger.info({ address: adminUrl }, `jwtgate admin on ${adminUrl}`)
  }
  logger.info(
    { workers: slots.slots.length, policy: source.file, policy_hash: live.current.hash.slice(0, 12) },
    `jwtgate primary: starting ${slots.slots.length} workers`,
  )
  slots.start()

  // Reloads run one at a time, each with its workers', coalesced (lifecycle/watch.ts).
  const coalesced = new Reloads(
    source.file,
    () => live.current,
    () => reloadAll(live, slots, reloads, logger).then(() => true),
  )
  const reload = () => coalesced.request()
  const watcher = watchPolicy(source.file, () => live.current, coalesced, logger)
  return untilSignalled({ logger, reload, shutdown: () => shutdown.graceful(), graceMs: workersGone + EXIT_MARGIN_MS })
}

/** Reloads the primary's policy and, when it is good, every listening worker's. */
async function reloadAll(live: LivePolicy, slots: WorkerSlots, reloads: ReloadMetrics, logger: Logger): Promise<void> {
  if (!(await live.reload())) {
    reloads.record(false)
    return
  }
  // A worker still starting reads the file as it starts.
  const outcomes = await slots.askAll<boolean>({ kind: 'reload' }, RELOAD_TIMEOUT_MS)
  let failed = 0
  for (const outcome of outcomes) {
    if ('error' in outcome || !outcome.value) {
      failed++
      // The worker logged why; it keeps its previous policy.
      logger.error(
        { worker: outcome.slot.number, error: 'error' in outcome ? outcome.error : 'refused the policy' },
        `worker ${outcome.slot.number} did not reload; it keeps its previous policy`,
      )
    }
  }
  reloads.record(failed === 0)
  logger.info({ policy_hash: live.current.hash.slice(0, 12), workers: outcomes.length - failed, failed }, 'policy reloaded')
}

/**
 * The port the workers open their SO_REUSEPORT sockets on: the policy's, or for port 0 one the
 * kernel picks for a socket of the same kind, closed again at once (the workers bind it moments
 * later; port 0 is for tests and trials). A port that cannot be opened fails here, before any
 * worker is forked, as a single gateway's would.
 */
async function sharedPort(address: { host: string; port: number }): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new ListenError('proxy', address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`, err.code, err.message),
      ),
    )
    probe.listen({ host: address.host, port: address.port, reusePort: true, exclusive: true }, resolve)
  })
  const { port } = probe.address() as AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** What a worker asks the primary: the memory backend's revocations, as it starts. */
async function answerWorker(live: LivePolicy, question: Question): Promise<unknown> {
  if (question.kind !== 'revocations') throw new Error(`the primary does not answer ${question.kind}`)
  return live.current.revocation?.store.entries() ?? []
}
