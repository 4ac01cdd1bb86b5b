// The issuers a route (or one of its token sources) accepts, looked up by a token's unverified
// iss: a map read for exact values (the issuer and its aliases), then a check per multi-tenant
// template issuer (there are few). Only the issuer found may verify the token.
import { deny, failedCheck, oneOf, type Denial, type FailedCheck } from '../http/denial.js'
import type { Issuer } from './issuer.js'
import { matchTenant } from './issuer_template.js'

export class IssuerSet {
  private readonly byIss = new Map<string, Issuer>()
  private readonly templates: Issuer[] = []
  /** The iss values accepted, in words, for a refusal's check (explain): made at the first refusal. */
  private words: { accepted: string[]; wanted: string } | undefined

  constructor(readonly list: readonly Issuer[]) {
    for (const issuer of list) {
      if (issuer.template) this.templates.push(issuer)
      for (const iss of issuer.exactIss) this.byIss.set(iss, issuer)
    }
  }

  /** The issuer that checks a token with these (unverified) claims, or why there is none. */
  find(claims: Record<string, unknown>): Issuer | Denial {
    const iss = claims.iss
    if (typeof iss !== 'string') return deny('wrong_issuer', 'the token has no iss claim', this.refusal(iss))
    const exact = this.byIss.get(iss)
    if (exact) return exact
    for (const issuer of this.templates) {
      const match = matchTenant(issuer.template!, iss, claims.tid)
      if (match === true) return issuer
      if (match) return match
    }
    return deny('wrong_issuer', 'the token issuer is not accepted here', this.refusal(iss))
  }

  private refusal(found: unknown): FailedCheck {
    if (!this.words) {
      const accepted = acceptedIss(this.list)
      this.words = { accepted, wanted: `must be ${oneOf(accepted)}` }
    }
    return failedCheck('iss', found, this.words.wanted, this.words.accepted)
  }
}

/** Every iss the issuers accept: their exact ones, and each multi-tenant issuer as written (`…/{tid}/v2.0`). */
export function acceptedIss(issuers: Iterable<Issuer>): string[] {
  return [...issuers].flatMap((i) => (i.template ? [i.issuer] : i.exactIss))
}
