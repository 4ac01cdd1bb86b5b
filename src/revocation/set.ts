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
  /** Keyed by scopeKey(jti, iss): the jti alone for an entry of every issuer. */
  readonly jti = new Map<string, number>()
  /** Keyed by scopeKey(sub, iss). */
  readonly subjects = new Map<string, SubjectEntry>()

  /**
   * Whether these (verified) claims belong to a revoked token: an entry of every issuer, or one
   * of the token's `iss`. Four Map reads at most.
   */
  isRevoked(claims: Record<string, unknown>, now: number): boolean {
    const iss = typeof claims.iss === 'string' ? claims.iss : undefined
    if (this.jti.size !== 0) {
      const id = jtiOf(claims)
      if (id !== undefined && (this.jtiRevoked(id, now) || (iss !== undefined && this.jtiRevoked(scopeKey(id, iss), now)))) return true
    }
    if (this.subjects.size !== 0) {
      const sub = claims.sub
      if (typeof sub === 'string') {
        // A token without iat cannot show it was issued after the revocation.
        const iat = typeof claims.iat === 'number' ? claims.iat : -Infinity
        if (this.subjectRevoked(sub, iat, now) || (iss !== undefined && this.subjectRevoked(scopeKey(sub, iss), iat, now))) return true
      }
    }
    return false
  }

  private jtiRevoked(key: string, now: number): boolean {
    const expiresAt = this.jti.get(key)
    if (expiresAt === undefined) return false
    if (now < expiresAt) return true
    this.jti.delete(key)
    return false
  }

  private subjectRevoked(key: string, iat: number, now: number): boolean {
    const entry = this.subjects.get(key)
    if (entry === undefined) return false
    if (now >= entry.expiresAt) {
      this.subjects.delete(key)
      return false
    }
    return iat < entry.before
  }

  /** Adds (or extends) a jti entry (of one issuer, or of every issuer); an entry always keeps its later expiry. */
  addJti(id: string, expiresAt: number, iss?: string): void {
    const key = scopeKey(id, iss)
    const current = this.jti.get(key)
    if (current === undefined || current < expiresAt) this.jti.set(key, expiresAt)
  }

  /** Adds a subject entry; the later `before` wins (a revocation is never weakened). */
  addSubject(sub: string, before: number, expiresAt: number, iss?: string): void {
    const key = scopeKey(sub, iss)
    const current = this.subjects.get(key)
    if (current === undefined) this.subjects.set(key, { before, expiresAt })
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

/**
 * A token's jti as the list holds it. RFC 7519 makes jti a string, but some issuers put a number
 * there: it is compared by its decimal form, so revoking "42" revokes a token with jti 42 (such a
 * token would otherwise be unrevocable while the API said 201). Any other type has no jti.
 */
export function jtiOf(claims: Record<string, unknown>): string | undefined {
  const id = claims.jti
  if (typeof id === 'string') return id
  if (typeof id === 'number' && Number.isFinite(id)) return String(id)
  return undefined
}

/**
 * The key of an entry: the id alone for an entry of every issuer (as before entries had an
 * issuer), NUL + iss + NUL + id for one of an issuer. An `iss` with a NUL is refused where
 * entries come in, so two scoped keys never collide.
 */
export function scopeKey(id: string, iss: string | undefined): string {
  return iss === undefined ? id : `\u0000${iss}\u0000${id}`
}

/** The id and issuer (undefined: every issuer) of a key. */
export function unscope(key: string): { id: string; iss?: string } {
  if (!key.startsWith('\u0000')) return { id: key }
  const end = key.indexOf('\u0000', 1)
  return end < 0 ? { id: key } : { id: key.slice(end + 1), iss: key.slice(1, end) }
}

/** The explicit all-issuers form of `iss` in the API, the CLI and the list file. */
export const ALL_ISSUERS = '*'

const MAX_ISS_LENGTH = 1024

/**
 * `iss` as given: a string naming one issuer (the tokens' `iss` claim, exactly), `"*"` (or
 * nothing) for every issuer. Returns the scope (undefined: every issuer) or a problem.
 */
export function checkIssuer(v: unknown): { iss: string | undefined } | string {
  if (v === undefined || v === ALL_ISSUERS) return { iss: undefined }
  if (typeof v !== 'string' || v === '' || v.length > MAX_ISS_LENGTH || hasControlCharacter(v))
    return `iss must be the tokens' issuer (their iss claim), or "*" for every issuer: a string of at most ${MAX_ISS_LENGTH} characters without control characters`
  return { iss: v }
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) < 0x20 || text.charCodeAt(i) === 0x7f) return true
  return false
}
