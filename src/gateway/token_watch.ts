// A token checked once, when a long exchange began (a WebSocket tunnel, a gRPC stream), must not
// outlive the gateway's acceptance of it: `watchToken` calls back at its expiry (exp plus the
// issuer's clock skew, as verification allows) or when the revocation store revokes it.
import { onRevocation, REVOKED } from '../revocation/store.js'
import type { CompiledPolicy } from '../policy/compile.js'
import type { RequestState } from './request_state.js'

export type TokenStopReason = 'expired' | 'revoked'

// The expiry is reached in steps of at most this: Node keeps one list of timers per duration, so
// watches armed with the same step share one (an append), where the time left, different for
// every call, made a list of its own, inserted into and removed from the timers' priority queue
// for each gRPC call (about 1% of a unary call's CPU in a profile). A watch that outlives a step
// arms the next; within the last step the timer is set to the expiry itself.
const STEP_MS = 60_000

/** When the gateway stops accepting the request's token; undefined without a token or exp. */
export function tokenEndsAt(state: RequestState): number | undefined {
  const exp = state.identity?.claims.exp
  return typeof exp === 'number' ? exp * 1000 + state.identity!.issuer.clockSkewMs : undefined
}

/**
 * Calls `stop` once, at the token's end or revocation (by the store `policy()` has: the live
 * policy's); returns the function that stops watching.
 */
export function watchToken(state: RequestState, policy: () => CompiledPolicy, stop: (reason: TokenStopReason) => void): () => void {
  const identity = state.identity
  if (!identity) return () => {}
  let timer: NodeJS.Timeout | undefined
  let done = false
  const finish = (reason: TokenStopReason) => {
    if (done) return
    unwatch()
    stop(reason)
  }
  const unsubscribe = onRevocation(() => {
    if (policy().revocation?.store.check(identity.claims, Date.now()) === REVOKED) finish('revoked')
  })
  const unwatch = () => {
    done = true
    clearTimeout(timer)
    unsubscribe()
  }
  const endsAt = tokenEndsAt(state)
  if (endsAt !== undefined) {
    // Always through a timer, even when the end has passed already (a loaded machine): the caller
    // gets the watch back before `stop` can run.
    const arm = () => {
      const left = endsAt - Date.now()
      if (left <= 0 && timer !== undefined) return finish('expired')
      timer = setTimeout(arm, Math.min(Math.max(left, 0), STEP_MS))
      timer.unref()
    }
    arm()
  }
  return unwatch
}
