// The primary's own copy of the policy: what /config shows, the revocation store POST
// /revocations writes through, and the judge of a reload before any worker sees it. The primary
// verifies no token, so its issuers are stopped (never fetching keys).
import type { Logger } from 'pino'
import { logRejectedReload, stopIssuers, warnRestartOnly } from '../lifecycle/live_policy.js'
import { loadPolicy, type CompiledPolicy } from '../policy/compile.js'
import { commitRevocation } from '../revocation/config.js'
import { startReloadedStore } from '../revocation/store.js'

export class PrimaryPolicy {
  loadedAt = new Date()

  private constructor(readonly file: string, public current: CompiledPolicy, private readonly logger: Logger) {}

  /** Throws PolicyError for a bad policy. */
  static async load(file: string, logger: Logger): Promise<PrimaryPolicy> {
    const policy = loadPolicy(file, logger)
    stopIssuers(policy)
    logger.level = policy.logLevel
    await policy.revocation?.store.start()
    return new PrimaryPolicy(file, policy, logger)
  }

  /** Loads the file again: true when the new policy is good (and now current); false, said why, when not. */
  async reload(): Promise<boolean> {
    const current = this.current
    let next: CompiledPolicy
    try {
      next = loadPolicy(this.file, this.logger, process.env, current)
    } catch (err) {
      logRejectedReload(err, this.file, current, this.logger)
      return false
    }
    // Issuers the reload kept are the current policy's, stopped already (a second stop throws).
    for (const issuer of next.issuers.values()) if (current.issuers.get(issuer.name) !== issuer) issuer.stop()
    const oldStore = current.revocation?.store
    const newStore = next.revocation?.store
    if (!(await startReloadedStore(oldStore, newStore, this.logger))) return false
    this.current = next
    commitRevocation(next.revocation)
    this.loadedAt = new Date()
    this.logger.level = next.logLevel
    warnRestartOnly(current, next, this.logger)
    if (oldStore && oldStore !== newStore) void oldStore.stop()
    return true
  }

  async stop(): Promise<void> {
    await this.current.revocation?.store.stop()
  }
}
