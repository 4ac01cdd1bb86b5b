// The memory backend: the set lives in this process only (revoked through its admin API) and
// is lost on restart. For one gateway, tests and trying things out.
import { LocalUses, RevocationStore, type Revocation } from './store.js'

export class MemoryStore extends RevocationStore {
  private readonly uses = new LocalUses()

  protected async open(): Promise<void> {
    this.synced(0)
  }

  protected async close(): Promise<void> {}

  protected async persist(_entry: Revocation): Promise<void> {}

  protected async claimFirstUse(key: string, ttlMs: number): Promise<boolean> {
    return this.uses.claim(key, ttlMs)
  }

  protected override sweep(now: number): void {
    super.sweep(now)
    this.uses.sweep(now)
  }
}
