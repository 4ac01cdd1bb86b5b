// What the gateway learns about one request, from its arrival to its access line; shared by the
// HTTP path (src/gateway/app.ts, src/gateway/forward.ts) and the WebSocket tunnel (src/gateway/websocket.ts).
import type { Decision } from '../decide.js'
import type { CompiledPolicy } from '../policy/compile.js'

/** What the gateway learnt about one request, for forwarding and the access log. */
export interface RequestState extends Decision {
  /** The policy the request started under; a reload never changes it mid-request. */
  policy: CompiledPolicy
  upstreamError?: string
  /** performance.now() when forwarding began, for the upstream latency metric. */
  forwardedAt?: number
}

/** Every field set up front: one object shape for all requests. */
export function newState(policy: CompiledPolicy): RequestState {
  return {
    policy,
    path: undefined,
    route: undefined,
    identity: undefined,
    refused: undefined,
    identityHeaders: undefined,
    denial: undefined,
    reported: undefined,
    preflight: undefined,
    upstreamError: undefined,
    forwardedAt: undefined,
  }
}

/**
 * Counts a finished request in the metrics and writes its access line: the one place for both,
 * for HTTP requests and WebSocket tunnels alike. `target` is the raw request target, for a path
 * that was never normalized; `ms` the time it took.
 */
export type RecordRequest = (
  state: RequestState | undefined,
  requestId: string,
  method: string,
  target: string,
  status: number,
  ms: number,
  websocket?: boolean,
) => void
