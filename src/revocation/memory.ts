// The memory backend: the set lives in this process only (revoked through its admin API) and
// is lost on restart (but not on a reload: the store a reload brings takes the entries over).
// For one gateway, tests and trying things out.
import { LocalUses, RevocationStore, type Revocation } from './store.js'

export class MemoryStore extends RevocationStore {
  private readonly uses = new LocalUses()

  protected async open(): Promise<void> {
    this.synced(0)
  }

  protected async close(): Promise<void> {}

  protected async persist(_entry: Revocation): Promise<void> {}

  /**
   * Takes over the entries (and the used one-time tokens) of the memory store a reload
   * replaces, re-evaluated under this store's settings: a subject entry is kept until its
   * `before` + this max_token_lifetime + this margin, a jti entry until its exp + this margin
   * (a jti revoked without exp keeps the exp it was given then: revocation time +
   * max_token_lifetime). Revocations the old store completes from now on reach this one too.
   */
  takeOver(from: RevocationStore): void {
    const now = Date.now()
    const entries = from.entries(now)
    let changed = 0
    let dropped = 0
    for (const entry of entries) {
      const expiresAt =
        entry.kind === 'jti' ? entry.expiresAt - from.marginMs + this.marginMs : entry.before * 1000 + this.settings.maxTokenLifetimeMs + this.marginMs
      if (expiresAt !== entry.expiresAt) changed++
      if (expiresAt <= now) {
        dropped++
        continue
      }
      this.remember({ ...entry, expiresAt })
    }
    if (from instanceof MemoryStore) this.uses.takeOver(from.uses)
    ;(from as MemoryStore).successor = this
    const fields = { component: 'revocation', carried: entries.length - dropped, re_evaluated: changed, dropped }
    if (dropped > 0)
      this.log.warn(fields, 'revocations carried over into the reloaded memory store; entries past their expiry under the new settings were dropped')
    else if (entries.length > 0) this.log.info(fields, 'revocations carried over into the reloaded memory store')
  }

  protected async claimFirstUse(key: string, ttlMs: number): Promise<boolean> {
    return this.uses.claim(key, ttlMs)
  }

  protected override sweep(now: number): void {
    super.sweep(now)
    this.uses.sweep(now)
  }
}
