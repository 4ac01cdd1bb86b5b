// What the gateway learns about one request, from its arrival to its access line; shared by the
// HTTP path (src/gateway/app.ts, src/gateway/forward.ts) and the WebSocket tunnel (src/gateway/websocket.ts).
import type { IncomingMessage } from 'node:http'
import type { Decision } from '../decide.js'
import { incomingTraceContext, type TraceContext } from '../http/trace_context.js'
import type { CompiledPolicy } from '../policy/compile.js'
import type { ServerSpan, Tracing } from '../tracing/tracing.js'

/** What the gateway learnt about one request, for forwarding and the access log. */
export interface RequestState extends Decision {
  /** The policy the request started under; a reload never changes it mid-request. */
  policy: CompiledPolicy
  upstreamError?: string
  /** performance.now() when forwarding began, for the upstream latency metric. */
  forwardedAt?: number
  /** The upstream's status and how long its head took (ms), once it answered. */
  upstreamStatus?: number
  upstreamMs?: number
  /** Body bytes read from the client and passed on, and sent back to it from the upstream. */
  requestBytes?: number
  responseBytes?: number
  /** The client's valid W3C trace context, if it sent one (src/http/trace_context.ts). */
  trace?: TraceContext
  /** The request's SERVER span, when tracing is on (src/tracing/). */
  span?: ServerSpan
}

/** Every field set up front: one object shape for all requests. */
export function newState(policy: CompiledPolicy): RequestState {
  return {
    policy,
    path: undefined,
    route: undefined,
    identity: undefined,
    issuer: undefined,
    refused: undefined,
    identityHeaders: undefined,
    denial: undefined,
    reported: undefined,
    preflight: undefined,
    upstreamError: undefined,
    forwardedAt: undefined,
    upstreamStatus: undefined,
    upstreamMs: undefined,
    requestBytes: undefined,
    responseBytes: undefined,
    trace: undefined,
    span: undefined,
  }
}

/**
 * Reads the client's trace context and, with tracing on, starts the request's SERVER span: once
 * per request, as it arrives. Without a traceparent header and without tracing this costs one
 * property read.
 */
export function traceRequest(state: RequestState, raw: IncomingMessage, tracing: Tracing | undefined): void {
  const { traceparent } = raw.headers
  if (traceparent !== undefined) state.trace = incomingTraceContext(traceparent, raw.headers.tracestate)
  if (tracing) state.span = tracing.startServer(raw.method ?? 'GET', state.trace)
}

/**
 * Counts a finished request in the metrics, writes its access line and ends its span: the one
 * place for all three, for HTTP requests and WebSocket tunnels alike. `raw` is the client's
 * request (its method, its raw target for a path that was never normalized, its address); `ms`
 * the time it took; `responseBytes` the body bytes sent back (undefined for a tunnel).
 */
export type RecordRequest = (
  state: RequestState | undefined,
  raw: IncomingMessage,
  requestId: string,
  status: number,
  ms: number,
  responseBytes?: number,
  websocket?: boolean,
) => void
