// What the gateway asks of tracing, and when tracing is on. The implementation on the
// OpenTelemetry SDK (./otel.ts) is imported only when the standard OTEL_* variables ask for span
// export: a gateway without them loads no OpenTelemetry module and pays one `undefined` check
// per request. Trace context is propagated either way (src/http/trace_context.ts).
import type { TraceContext } from '../http/trace_context.js'

/** The headers an upstream receives to continue a trace. */
export interface TraceHeaders {
  readonly traceparent: string
  /** Undefined: no tracestate header. */
  readonly tracestate: string | undefined
}

/** Spans for requests; one per gateway process (each cluster worker has its own). */
export interface Tracing {
  /** The SERVER span of a request, from now; a child of the client's valid context, else a new trace. */
  startServer(method: string, parent: TraceContext | undefined): ServerSpan
  /** Exports the spans still queued, for at most `timeoutMs`; later spans are dropped. */
  shutdown(timeoutMs: number): Promise<void>
}

export interface ServerSpan {
  /** 32 hex digits: the trace the access line names. */
  readonly traceId: string
  /** 16 hex digits: this span. */
  readonly spanId: string
  /** The CLIENT span of the call to the upstream, a child of this one: the upstream receives its context. */
  startClient(call: UpstreamCall): ClientSpan
  /** Ends the span with what came of the request. */
  end(outcome: RequestOutcome): void
}

export interface ClientSpan extends TraceHeaders {
  /** The upstream answered (its status line arrived). */
  answered(status: number): void
  /** The exchange is over; `errorType` (a reason code such as `upstream_timeout`) when it failed. */
  end(errorType?: string): void
}

/** The upstream call, for the CLIENT span's attributes: never a query string. */
export interface UpstreamCall {
  method: string
  upstream: string
  /** scheme://host[:port] */
  origin: string
  /** The path sent, without its query. */
  path: string
}

/** What a request came to: the SERVER span's attributes. Nothing here is a secret. */
export interface RequestOutcome {
  /** The route's name; undefined when no route matched. */
  route: string | undefined
  status: number
  /** allow: served (forwarded, or a preflight); deny: refused; report: a `mode: report` route that would have refused it. */
  decision: 'allow' | 'deny' | 'report'
  /** The deny reason, the reason a report route would have denied, or an upstream failure. */
  reason: string | undefined
  issuer: string | undefined
  upstream: string | undefined
  /** The normalized path (the raw one, cut, when it could not be normalized); never the query. */
  path: string
  scheme: 'http' | 'https'
  serverAddress: string | undefined
  serverPort: number | undefined
  /** The client's address as `trusted_proxies` allow (src/proxy/client_address.ts). */
  clientAddress: string | undefined
  /** The address of the connection's other end. */
  peerAddress: string | undefined
  userAgent: string | undefined
  httpVersion: string
  requestId: string
  websocket: boolean
}

// The OpenTelemetry specification's variables (docs/policy.md, "Tracing"): an OTLP endpoint turns
// export on; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keep it off.
const ENDPOINTS = ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'] as const

/** Whether the environment asks for span export. */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((e) => e.trim().toLowerCase())
  if (exporters.includes('none')) return false
  return ENDPOINTS.some((name) => (env[name] ?? '').trim() !== '')
}
