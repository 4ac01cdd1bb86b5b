// `jwtgate serve`: this process becomes a single gateway, the primary of a cluster
// (`workers: N`), or one of that primary's workers.
import { availableParallelism } from 'node:os'
import cluster from 'node:cluster'
import { readPolicySource, type PolicySource } from '../policy/load.js'
import { defaultsOf } from '../policy/defaults.js'
import { PolicySchema, type PolicyDocument } from '../policy/schema.js'
import { lineFormat } from '../log.js'
import { logStartupError } from './policy_error.js'
import { untilSignalled } from './signals.js'
import { limitHeapGrowth } from './heap_growth.js'
import type { RunningGateway } from '../server.js'

/** Runs until a signal ends it; resolves with the exit code only when it cannot start. */
export async function serve(policyFile: string): Promise<number> {
  limitHeapGrowth()
  // A worker of `workers: N`: node:cluster forked it with the same command line; it reads the
  // file itself, as it would after a restart.
  const worker = Number(process.env.JWTGATE_WORKER)
  if (cluster.isWorker && worker > 0) return (await import('../cluster/worker.js')).runWorker(policyFile, worker)
  // Read once here, compiled once by whichever this process becomes: the logger the policy is
  // compiled with depends on it (a cluster shares standard output).
  let source: PolicySource
  try {
    source = readPolicySource(policyFile)
  } catch (err) {
    return logStartupError(err)
  }
  if (clustered(source.document.workers)) return (await import('../cluster/primary.js')).runPrimary(source)
  return serveAlone(source)
}

async function serveAlone(source: PolicySource): Promise<number> {
  const { startGateway } = await import('../server.js')
  let running: RunningGateway
  try {
    running = await startGateway({ policyFile: source.file, source, watch: true })
  } catch (err) {
    return logStartupError(err, lineFormat(source.document))
  }
  const { drainDelayMs, timeoutMs } = running.gateway.policy.shutdown
  return untilSignalled({ logger: running.logger, reload: running.reload, shutdown: running.shutdown, graceMs: drainDelayMs + timeoutMs })
}

/** More than one process; the compiled policy's `workers` says how many (`auto` is one per core). */
function clustered(workers: PolicyDocument['workers']): boolean {
  const count = workers ?? defaultsOf(PolicySchema, ['workers']).workers
  return count === 'auto' ? availableParallelism() > 1 : count > 1
}
