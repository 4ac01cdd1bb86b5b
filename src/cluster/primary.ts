// `jwtgate serve` with `workers: N` (N > 1): this process becomes the node:cluster primary. It
// loads the policy first (a bad one exits before anything is forked), forks the workers that
// serve the proxy listener, serves the admin listener itself, reloads on SIGHUP or a file change,
// replaces a worker that dies, and on SIGTERM/SIGINT shuts every worker down gracefully.
//
// The listening socket is node:cluster's: Node 20 has no reusePort. Node's default scheduling
// on Linux is kept: round-robin, the primary accepts each connection and hands it to the next
// worker. With the other policy (SCHED_NONE) every worker accepts on the shared socket and the
// kernel wakes them unevenly: a few workers take most connections (Node's cluster docs).
import cluster from 'node:cluster'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import type { Logger } from 'pino'
import { policyReloads } from '../admin/metrics.js'
import { adminListener } from '../admin/server.js'
import { printPolicyError } from '../lifecycle/policy_error.js'
import { createLogger } from '../log.js'
import { listen, watchPolicy } from '../server.js'
import type { Question } from './ipc.js'
import { clusterAdmin } from './primary_admin.js'
import { PrimaryPolicy } from './primary_policy.js'
import { WorkerSlots } from './slots.js'

// A worker's reload may fetch a new issuer's keys (bounded by its jwks.timeout).
const RELOAD_TIMEOUT_MS = 30_000
// Beyond drain_delay + timeout: for a worker to close its stores and exit.
const EXIT_MARGIN_MS = 3000

export async function runPrimary(policyFile: string): Promise<number> {
  // The workers write to the same standard output.
  const logger = createLogger('info', undefined, { sharedStdout: true })
  let policy: PrimaryPolicy
  try {
    policy = await PrimaryPolicy.load(policyFile, logger)
  } catch (err) {
    return printPolicyError(err)
  }
  const registry = new Registry()
  const reloads = policyReloads(registry)
  let shuttingDown = false

  // 'advanced': structured clone, so a metric's Infinity or NaN crosses the channel intact.
  cluster.setupPrimary({ serialization: 'advanced' })
  const slots = new WorkerSlots(policy.current.workers, logger, (_slot, question) => answerWorker(policy, question))
  const view = { policy: () => policy.current, loadedAt: () => policy.loadedAt, shuttingDown: () => shuttingDown, registry }
  let admin: FastifyInstance | undefined
  const adminAddress = policy.current.admin
  if (adminAddress) {
    admin = adminListener(clusterAdmin(view, slots), logger)
    const adminUrl = await listen(admin, adminAddress.host, adminAddress.port)
    logger.info({ address: adminUrl }, `jwtgate admin on ${adminUrl}`)
  }
  logger.info({ workers: slots.slots.length, policy: policyFile, policy_hash: policy.current.hash.slice(0, 12) }, `jwtgate primary: starting ${slots.slots.length} workers`)
  slots.start()

  // Reloads run one at a time, in order.
  let reloading: Promise<void> = Promise.resolve()
  const reload = () => (reloading = reloading.then(() => reloadAll(policy, slots, reloads, logger)))
  const watcher = watchPolicy(policyFile, () => policy.current, () => void reload(), logger)
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the policy')
    void reload()
  })

  const { drainDelayMs, timeoutMs } = policy.current.shutdown
  const workersGone = drainDelayMs + timeoutMs + EXIT_MARGIN_MS
  closeWithGrace({
    delay: workersGone + EXIT_MARGIN_MS,
    skip: ['SIGHUP'],
    logger: { error: (m: unknown) => logger.error({ detail: String(m) }, 'shutdown') },
    onSecondSignal: (signal) => {
      logger.warn({ signal }, 'second signal: exiting now')
      // The workers follow: their IPC channel closes with this process.
      process.exit(1)
    },
  }, async ({ signal, err }) => {
    if (err) logger.error({ err: { message: err.message, stack: err.stack } }, 'unexpected error; shutting down')
    logger.info({ signal, drain_delay_ms: drainDelayMs }, 'shutting down: readiness off, telling every worker')
    shuttingDown = true
    watcher.close()
    await slots.stop(workersGone)
    await admin?.close()
    await policy.stop()
    logger.info('shut down')
  })
  return new Promise<number>(() => {})
}

/** Reloads the primary's policy and, when it is good, every listening worker's. */
async function reloadAll(policy: PrimaryPolicy, slots: WorkerSlots, reloads: ReturnType<typeof policyReloads>, logger: Logger): Promise<void> {
  if (!(await policy.reload())) {
    reloads.inc({ result: 'failure' })
    return
  }
  // A worker still starting reads the file as it starts.
  const outcomes = await slots.askAll<boolean>({ kind: 'reload' }, RELOAD_TIMEOUT_MS)
  let failed = 0
  for (const outcome of outcomes) {
    if ('error' in outcome || !outcome.value) {
      failed++
      // The worker logged why; it keeps its previous policy.
      logger.error({ worker: outcome.slot.number, error: 'error' in outcome ? outcome.error : 'refused the policy' }, `worker ${outcome.slot.number} did not reload; it keeps its previous policy`)
    }
  }
  reloads.inc({ result: failed ? 'failure' : 'success' })
  logger.info({ policy_hash: policy.current.hash.slice(0, 12), workers: outcomes.length - failed, failed }, 'policy reloaded')
}

/** What a worker asks the primary: the memory backend's revocations, as it starts. */
async function answerWorker(policy: PrimaryPolicy, question: Question): Promise<unknown> {
  if (question.kind !== 'revocations') throw new Error(`the primary does not answer ${question.kind}`)
  return policy.current.revocation?.store.entries() ?? []
}
