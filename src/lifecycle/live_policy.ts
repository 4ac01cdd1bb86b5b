// The policy a process runs on, and the one way a reload replaces it: in a single gateway, in
// each cluster worker and in the cluster's primary alike. A bad policy never replaces a good one.
import type { Logger } from 'pino'
import type { ReloadOutcome } from '../admin/server.js'
import type { Issuer } from '../auth/issuer.js'
import type { CompiledPolicy } from '../policy/compile.js'
import type { Env } from '../policy/load.js'
import { formatProblem, PolicyError } from '../policy/problems.js'
import { commitRevocation, handOverRevocations } from '../revocation/config.js'
import { startReloadedStore } from '../revocation/store.js'
import { loadPolicyForReload } from './policy_reader.js'

export interface LivePolicyOptions {
  /** The policy file, read again on every reload. */
  file: string
  /** The environment ${VAR} references read; read again on every reload. */
  env: Env
  logger: Logger
  /**
   * A gateway verifies tokens: its issuers fetch keys. The cluster's primary verifies none: its
   * issuers are stopped at once and never fetch.
   */
  verifiesTokens: boolean
  /** Says which changes wait for a restart; a cluster's worker leaves it to its primary, which says it once. */
  warnsRestartOnly: boolean
  /** Issuers about to fetch their first keys: those of the first policy, then those a reload adds. */
  onIssuersAdded?(issuers: readonly Issuer[]): void
  /** The reloaded policy is current now: what the process holds outside it follows. */
  onCommit?(next: CompiledPolicy, previous: CompiledPolicy): void
  /** A reload left the memory backend and dropped this many revocations (counted in a metric). */
  onRevocationsDropped?(count: number): void
}

export class LivePolicy {
  current: CompiledPolicy
  loadedAt = new Date()
  /** null until the first reload. */
  lastReload: ReloadOutcome | null = null
  // Reloads run one at a time, in order.
  private reloading: Promise<boolean> = Promise.resolve(true)

  constructor(
    policy: CompiledPolicy,
    private readonly options: LivePolicyOptions,
  ) {
    this.current = policy
    options.logger.level = policy.logLevel
    if (!options.verifiesTokens) stopIssuers(policy)
  }

  /**
   * The first key fetches, each bounded by its timeout, and the revocation list's first load. An
   * IdP that is down does not stop the start: its routes answer 503 until its keys arrive; so
   * do tokens until the revocation list is loaded.
   */
  async start(): Promise<void> {
    const issuers = this.options.verifiesTokens ? [...this.current.issuers.values()] : []
    this.options.onIssuersAdded?.(issuers)
    await Promise.all([...issuers.map((issuer) => issuer.start()), this.current.revocation?.store.start()])
  }

  /** Loads the file again: true when the new policy is good and now current; false, said why, when not. */
  reload(): Promise<boolean> {
    const run = () => this.reloadNow()
    return (this.reloading = this.reloading.then(run, run))
  }

  private refused(problems: string[]): false {
    this.lastReload = { at: new Date(), ok: false, problems }
    return false
  }

  /** Stops what the current policy runs: its issuers' key refreshes and its revocation store. */
  async stop(): Promise<void> {
    if (this.options.verifiesTokens) stopIssuers(this.current)
    await this.current.revocation?.store.stop()
  }

  private async reloadNow(): Promise<boolean> {
    const { file, env, logger, verifiesTokens } = this.options
    const current = this.current
    let next: CompiledPolicy
    try {
      next = await loadPolicyForReload(file, logger, env, current)
    } catch (err) {
      // Whatever went wrong, the running policy stays: a reload must never take the gateway down.
      return this.refused(logRejectedReload(err, file, current, logger))
    }
    // Issuers the reload kept are the running policy's, with their keys (and, in the primary, stopped already).
    const added = [...next.issuers.values()].filter((issuer) => current.issuers.get(issuer.name) !== issuer)
    const starting = verifiesTokens ? added : []
    if (verifiesTokens) this.options.onIssuersAdded?.(added)
    else for (const issuer of added) issuer.stop()
    const oldStore = current.revocation?.store
    const newStore = next.revocation?.store
    const [storeLoaded] = await Promise.all([startReloadedStore(oldStore, newStore, logger), ...starting.map((issuer) => issuer.start())])
    if (!storeLoaded) {
      for (const issuer of starting) issuer.stop()
      return this.refused([`${file}: the new policy's revocation list could not be loaded; the loaded policy is kept (see the log)`])
    }
    // The memory backend's entries move into the new memory store (or their loss is said), in
    // the same synchronous step as the switch: no revocation can fall between the two.
    const dropped = handOverRevocations(oldStore, newStore, logger)
    // One assignment: requests already running keep the policy they started with.
    this.current = next
    commitRevocation(next.revocation)
    this.loadedAt = new Date()
    this.lastReload = { at: this.loadedAt, ok: true, problems: [] }
    logger.level = next.logLevel
    this.options.onCommit?.(next, current)
    if (dropped > 0) this.options.onRevocationsDropped?.(dropped)
    if (verifiesTokens) for (const old of current.issuers.values()) if (next.issuers.get(old.name) !== old) old.stop()
    if (oldStore && oldStore !== newStore) void oldStore.stop()
    if (this.options.warnsRestartOnly) warnRestartOnly(current, next, logger)
    return true
  }
}

/** Compiling a policy makes each JWKS issuer an undici Agent; stopping them lets the process exit. */
export function stopIssuers(policy: CompiledPolicy): void {
  for (const issuer of policy.issuers.values()) issuer.stop()
}

/** Says why a reload's policy was refused, problem by problem; returns the problems. */
function logRejectedReload(err: unknown, policyFile: string, kept: CompiledPolicy, logger: Logger): string[] {
  const problems = err instanceof PolicyError ? err.problems.map(formatProblem) : [`${policyFile}:1:1 ${(err as Error).message}`]
  for (const problem of problems) logger.error({ problem }, 'policy reload rejected')
  logger.error({ problems: problems.length, kept: kept.hash.slice(0, 12) }, 'policy reload failed; keeping the loaded policy')
  return problems
}

/** Warns about changes a reload cannot apply. */
function warnRestartOnly(current: CompiledPolicy, next: CompiledPolicy, logger: Logger): void {
  if (next.listen.port !== current.listen.port || next.listen.host !== current.listen.host || next.maxHeaderBytes !== current.maxHeaderBytes) {
    logger.warn('listen address and limits.max_header_bytes changes take effect at the next restart')
  }
  if (next.workers !== current.workers) logger.warn({ workers: current.workers, next: next.workers }, 'a workers change takes effect at the next restart')
  if (next.listen.reusePort !== current.listen.reusePort) logger.warn('a listen.reuse_port change takes effect at the next restart')
  if (next.lineFormat.time !== current.lineFormat.time || next.lineFormat.levelLabel !== current.lineFormat.levelLabel) {
    logger.warn('log.time and log.level_label changes take effect at the next restart')
  }
}
