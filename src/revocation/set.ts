// The revoked tokens, in memory: what the per-request check reads. Two Maps, no I/O:
//   jti → when the entry may be forgotten (ms since the epoch: the token's exp plus the margin),
//   sub → { before: tokens of this subject issued before it (iat, seconds) are revoked; expiresAt }.
// Entries past their expiry are deleted when a lookup meets them and by a periodic sweep, so
// the set holds only what can still matter. 100,000 jti entries cost about 10 MB of heap.

export interface SubjectEntry {
  /** Unix seconds: a token of this subject whose iat is earlier (or absent) is revoked. */
  before: number
  /** ms since the epoch; past it the entry is gone. Infinity: kept until removed. */
  expiresAt: number
}

export class RevocationSet {
  readonly jti = new Map<string, number>()
  readonly subjects = new Map<string, SubjectEntry>()

  /** Whether these (verified) claims belong to a revoked token. Two Map reads at most. */
  isRevoked(claims: Record<string, unknown>, now: number): boolean {
    if (this.jti.size !== 0) {
      const id = claims.jti
      if (typeof id === 'string') {
        const expiresAt = this.jti.get(id)
        if (expiresAt !== undefined) {
          if (now < expiresAt) return true
          this.jti.delete(id)
        }
      }
    }
    if (this.subjects.size !== 0) {
      const sub = claims.sub
      if (typeof sub === 'string') {
        const entry = this.subjects.get(sub)
        if (entry !== undefined) {
          if (now >= entry.expiresAt) this.subjects.delete(sub)
          else {
            // A token without iat cannot show it was issued after the revocation.
            const iat = claims.iat
            if (typeof iat !== 'number' || iat < entry.before) return true
          }
        }
      }
    }
    return false
  }

  /** Adds (or extends) a jti entry; an entry always keeps its later expiry. */
  addJti(id: string, expiresAt: number): void {
    const current = this.jti.get(id)
    if (current === undefined || current < expiresAt) this.jti.set(id, expiresAt)
  }

  /** Adds a subject entry; the later `before` wins (a revocation is never weakened). */
  addSubject(sub: string, before: number, expiresAt: number): void {
    const current = this.subjects.get(sub)
    if (current === undefined) this.subjects.set(sub, { before, expiresAt })
    else {
      if (before > current.before) current.before = before
      if (expiresAt > current.expiresAt) current.expiresAt = expiresAt
    }
  }

  /** Replaces everything with another set's entries (a full reload of the file backend). */
  replaceWith(other: RevocationSet): void {
    this.jti.clear()
    this.subjects.clear()
    for (const [id, at] of other.jti) this.jti.set(id, at)
    for (const [sub, e] of other.subjects) this.subjects.set(sub, e)
  }

  /** Deletes every entry past its expiry; returns how many went. */
  sweep(now: number): number {
    let removed = 0
    for (const [id, at] of this.jti)
      if (now >= at) {
        this.jti.delete(id)
        removed++
      }
    for (const [sub, e] of this.subjects)
      if (now >= e.expiresAt) {
        this.subjects.delete(sub)
        removed++
      }
    return removed
  }

  get size(): number {
    return this.jti.size + this.subjects.size
  }
}
