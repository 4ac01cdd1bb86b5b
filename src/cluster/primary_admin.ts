// The admin listener of `workers: N`, served by the primary: readiness, metrics and revocations
// come from asking every worker; /config is the primary's own loaded policy.
import { AggregatorRegistry, Registry } from 'prom-client'
import type { AdminSource, Readiness, ReloadOutcome } from '../admin/server.js'
import { statusDocument, type ProcessStatus, type WorkerPart } from '../admin/status.js'
import type { CompiledPolicy } from '../policy/compile.js'
import { revokeHere } from '../admin/revocations.js'
import type { WorkerSlots } from './slots.js'

// A worker that takes longer is reported as not answering: /readyz must answer before the
// kubelet's probe times out (1 s by default), and a scrape before Prometheus's.
const READINESS_TIMEOUT_MS = 1000
const METRICS_TIMEOUT_MS = 2000
const REVOKE_TIMEOUT_MS = 2000
const STATUS_TIMEOUT_MS = 2000

export interface PrimaryView {
  policy(): CompiledPolicy
  loadedAt(): Date
  lastReload(): ReloadOutcome | null
  shuttingDown(): boolean
  /** The primary's own series (jwtgate_policy_reloads_total), shown instead of the workers'. */
  registry: Registry
  startedAt: number
}

export function clusterAdmin(view: PrimaryView, slots: WorkerSlots): AdminSource {
  return {
    policy: view.policy,
    loadedAt: view.loadedAt,
    lastReload: view.lastReload,
    readiness: () => readiness(view, slots),
    metrics: () => metrics(view.registry, slots),
    status: () => status(view, slots),
    // Stored by the primary (its own memory set, or the file or redis backend), then added to
    // every worker's set at once: 201 only when all of them have it, else 503 (the caller
    // retries; revoking twice is harmless). A worker still starting gets the primary's whole
    // set before it listens (./worker.ts).
    revoke: async (store, body) => {
      const entry = await revokeHere(store, body)
      const outcomes = await slots.askAll<boolean>({ kind: 'revoke', entry }, REVOKE_TIMEOUT_MS, ['attached', 'up'])
      const failed = outcomes.flatMap((o) => ('error' in o ? [`worker ${o.slot.number}: ${o.error}`] : []))
      if (failed.length) throw new Error(`stored, but not applied by ${failed.join('; ')}`)
      return entry
    },
  }
}

/** Ready when every worker is listening and says it is ready; each reason names its worker. */
async function readiness(view: PrimaryView, slots: WorkerSlots): Promise<Readiness> {
  if (view.shuttingDown()) return { reasons: ['shutting down'], degraded: [] }
  const outcomes = await slots.askAll<Readiness>({ kind: 'readiness' }, READINESS_TIMEOUT_MS)
  const result: Readiness = { reasons: [], degraded: [] }
  for (const slot of slots.slots) {
    const name = `worker ${slot.number}`
    const outcome = outcomes.find((o) => o.slot === slot)
    if (!outcome) result.reasons.push(`${name}: starting`)
    else if ('error' in outcome) result.reasons.push(`${name}: not answering (${outcome.error})`)
    else {
      result.reasons.push(...outcome.value.reasons.map((r) => `${name}: ${r}`))
      result.degraded.push(...outcome.value.degraded.map((d) => `${name}: ${d}`))
    }
  }
  return result
}

/**
 * One page for the whole gateway: the primary's policy and reloads, every worker's part (its
 * figures, key caches, refusals, connections) added up by statusDocument. A worker that does not
 * answer is listed as such; the page shows the others.
 */
async function status(view: PrimaryView, slots: WorkerSlots) {
  const [ready, outcomes] = await Promise.all([readiness(view, slots), slots.askAll<ProcessStatus>({ kind: 'status' }, STATUS_TIMEOUT_MS)])
  const parts: WorkerPart[] = slots.slots.map((slot) => {
    const outcome = outcomes.find((o) => o.slot === slot)
    if (!outcome) return { worker: slot.number, state: slot.state === 'up' ? 'listening' : 'starting' }
    if ('error' in outcome) return { worker: slot.number, state: 'not answering', error: outcome.error }
    return { worker: slot.number, state: 'listening', status: outcome.value }
  })
  const policy = view.policy()
  return statusDocument({
    policy,
    loadedAt: view.loadedAt(),
    lastReload: view.lastReload(),
    readiness: ready,
    startedAt: view.startedAt,
    parts,
    clustered: true,
    recentRefusals: policy.admin?.status.recentRefusals ?? 0,
  })
}

/**
 * Every listening worker's series added up with prom-client's AggregatorRegistry.aggregate, by
 * each metric's `aggregator` (summed unless it says otherwise, ../admin/metrics.ts). Not its
 * clusterMetrics(): that asks every worker, one still starting included, and fails the whole
 * scrape after 5 s when one does not answer. A listening worker that does not answer fails the
 * scrape here too (503): leaving its counts out would look like a counter reset to Prometheus.
 */
async function metrics(own: Registry, slots: WorkerSlots): Promise<{ contentType: string; text: string }> {
  const outcomes = await slots.askAll<Array<{ name: string }>>({ kind: 'metrics' }, METRICS_TIMEOUT_MS)
  const lists: Array<Array<{ name: string }>> = []
  for (const outcome of outcomes) {
    if ('error' in outcome) throw new Error(`worker ${outcome.slot.number} did not answer: ${outcome.error}`)
    lists.push(outcome.value.filter((m) => own.getSingleMetric(m.name) === undefined))
  }
  const merged = Registry.merge([AggregatorRegistry.aggregate(lists), own])
  return { contentType: merged.contentType, text: await merged.metrics() }
}
