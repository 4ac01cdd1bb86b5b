// Server nonces for DPoP proofs (RFC 9449 §8, §9): with `dpop.nonce`, a proof must carry a nonce
// the gateway handed out recently (in a 401 `use_dpop_nonce` answer's DPoP-Nonce header), so a
// proof cannot be made ahead of time for later use. Nonces are stateless, as oidc-provider's are
// (lib/helpers/challenge.js): an HMAC of the current time step under the policy's secret, so
// every worker and replica sharing the secret accepts the others' nonces without a store.
import { createHmac, timingSafeEqual } from 'node:crypto'

/** A nonce is for one step (a minute, or the lifetime when shorter); accepted while it is one of the last steps covering `lifetime`. */
const STEP_MS = 60_000

export class DpopNonces {
  private step = Number.NaN
  private values: string[] = []
  private readonly stepMs: number
  private readonly steps: number

  constructor(
    private readonly secret: Buffer,
    readonly lifetimeMs: number,
  ) {
    // A lifetime under a minute is its own step.
    this.stepMs = Math.max(1, Math.min(STEP_MS, lifetimeMs))
    this.steps = Math.max(1, Math.ceil(lifetimeMs / this.stepMs))
  }

  /** The nonce to hand out now. */
  current(now: number): string {
    return this.window(now)[0]!
  }

  /** Whether a proof's nonce was handed out within the lifetime (compared in constant time). */
  accepts(nonce: string, now: number): boolean {
    const given = Buffer.from(nonce)
    let found = false
    for (const value of this.window(now)) {
      const expected = Buffer.from(value)
      if (expected.length === given.length && timingSafeEqual(expected, given)) found = true
    }
    return found
  }

  /** The nonces of the current step and the ones before it still accepted, newest first. */
  private window(now: number): string[] {
    const step = Math.floor(now / this.stepMs)
    if (step !== this.step) {
      this.step = step
      this.values = Array.from({ length: this.steps + 1 }, (_, i) => this.nonceOf(step - i))
    }
    return this.values
  }

  private nonceOf(step: number): string {
    return createHmac('sha256', this.secret).update(`jwtgate dpop nonce ${step}`).digest('base64url')
  }
}
