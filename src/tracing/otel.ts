// Tracing on the OpenTelemetry SDK: spans exported over OTLP/HTTP (protobuf) where the standard
// OTEL_* variables say. Imported by src/server.ts only when ./tracing.ts's tracingWanted() holds,
// so a gateway without those variables loads none of these packages.
//
// The smallest official set (docs/design.md, "Tracing"): @opentelemetry/sdk-trace (the tracer,
// samplers, the batching processor), exporter-trace-otlp-proto (OTLP over HTTP in protobuf, the
// specification's default protocol; it reads the OTEL_EXPORTER_OTLP_* variables itself),
// resources (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), core (reading the variables as the
// SDK does), semantic-conventions (attribute names). No context manager and no instrumentation:
// the gateway starts each span with its parent explicitly, so nothing patches Node or undici.
// What the SDK does not read itself (the sampler, the batch settings) is read here the way
// @opentelemetry/sdk-node's create-from-env.ts does.
import { readFileSync } from 'node:fs'
import { type Context, createTraceState, DiagLogLevel, diag, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace, type Tracer } from '@opentelemetry/api'
import { getNumberFromEnv, getStringFromEnv } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { defaultResource, detectResources, resourceAttributesEnvDetector, resourceFromAttributes, serviceNameEnvDetector } from '@opentelemetry/resources'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace'
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions'
import type { Logger } from 'pino'
import { traceparentOf, type TraceContext } from '../http/trace_context.js'
import type { ClientSpan, RequestOutcome, ServerSpan, Tracing, UpstreamCall } from './tracing.js'

export interface TracingOptions {
  /** A cluster worker's number, as the resource attribute `jwtgate.worker`. */
  worker?: number
}

/** Starts the tracer from the process environment (the OpenTelemetry SDK reads process.env). */
export function startTracing(logger: Logger, options: TracingOptions = {}): Tracing {
  routeDiagnostics(logger)
  const protocol = (getStringFromEnv('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? getStringFromEnv('OTEL_EXPORTER_OTLP_PROTOCOL'))?.trim()
  if (protocol && protocol !== 'http/protobuf') logger.warn({ protocol }, 'tracing: only the http/protobuf OTLP protocol is supported; using it')
  const exporter = new OTLPTraceExporter()
  const provider = new TracerProvider({
    resource: resource(options.worker),
    sampler: samplerFromEnv(logger),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter,
        maxQueueSize: nonNegative('OTEL_BSP_MAX_QUEUE_SIZE'),
        scheduledDelayMillis: nonNegative('OTEL_BSP_SCHEDULE_DELAY'),
        exportTimeoutMillis: nonNegative('OTEL_BSP_EXPORT_TIMEOUT'),
        maxExportBatchSize: nonNegative('OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
      }),
    ],
  })
  const tracer = provider.getTracer('jwtgate', VERSION)
  logger.info({ endpoint: endpointForLog(), sampler: getStringFromEnv('OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on' }, 'tracing: exporting spans over OTLP')
  let stopped: Promise<void> | undefined
  return {
    startServer: (method, parent) => new OtelServerSpan(tracer, method, parent),
    shutdown: (timeoutMs) => (stopped ??= withTimeout(provider.shutdown(), timeoutMs, logger)),
  }
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/**
 * service.name `jwtgate` (OTEL_SERVICE_NAME, then a service.name in OTEL_RESOURCE_ATTRIBUTES,
 * replace it), its version, the process, and a worker's number; the SDK's telemetry.sdk.* too.
 */
function resource(worker: number | undefined) {
  const own = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: 'jwtgate',
    [ATTR_SERVICE_VERSION]: VERSION,
    'process.pid': process.pid,
    ...(worker === undefined ? {} : { 'jwtgate.worker': worker }),
  })
  // Later detectors win: OTEL_SERVICE_NAME over OTEL_RESOURCE_ATTRIBUTES, as the specification says.
  return defaultResource()
    .merge(own)
    .merge(detectResources({ detectors: [resourceAttributesEnvDetector, serviceNameEnvDetector] }))
}

/** OTEL_TRACES_SAMPLER and _ARG; parentbased_always_on when unset (the specification's default). */
function samplerFromEnv(logger: Logger): Sampler {
  const name = getStringFromEnv('OTEL_TRACES_SAMPLER')
  const ratio = () => {
    const value = getNumberFromEnv('OTEL_TRACES_SAMPLER_ARG')
    if (value === undefined || value < 0 || value > 1) {
      if (value !== undefined) logger.warn({ value }, 'tracing: OTEL_TRACES_SAMPLER_ARG is not between 0 and 1; using 1')
      return 1
    }
    return value
  }
  switch (name) {
    case undefined:
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
    case 'always_on':
      return new AlwaysOnSampler()
    case 'always_off':
      return new AlwaysOffSampler()
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio())
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) })
    default:
      logger.warn({ sampler: name }, 'tracing: unknown OTEL_TRACES_SAMPLER; using parentbased_always_on')
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
  }
}

function nonNegative(name: string): number | undefined {
  const value = getNumberFromEnv(name)
  return value !== undefined && value >= 0 ? value : undefined
}

/** Where spans go, for the start-up line: scheme, host and path only (no user info, no query). */
function endpointForLog(): string {
  const text = getStringFromEnv('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? getStringFromEnv('OTEL_EXPORTER_OTLP_ENDPOINT') ?? ''
  try {
    const url = new URL(text)
    return `${url.protocol}//${url.host}${url.pathname}`
  } catch {
    return '(not a URL)'
  }
}

// The SDK's own warnings and export failures, as gateway log lines: one line of at most 300
// characters (they can carry a stack), and at most one every 10 s (a collector that is down
// fails every batch).
const DIAG_INTERVAL_MS = 10_000

function routeDiagnostics(logger: Logger): void {
  let last = 0
  let suppressed = 0
  const warn = (...args: unknown[]) => {
    const now = Date.now()
    if (now - last < DIAG_INTERVAL_MS) {
      suppressed++
      return
    }
    last = now
    const detail = args.map(String).join(' ').split('\n', 1)[0]!.slice(0, 300)
    logger.warn({ detail, ...(suppressed ? { suppressed } : {}) }, 'tracing: OpenTelemetry SDK')
    suppressed = 0
  }
  const quiet = () => {}
  diag.setLogger({ error: warn, warn, info: quiet, debug: quiet, verbose: quiet }, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true })
}

async function withTimeout(done: Promise<void>, timeoutMs: number, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), Math.max(timeoutMs, 0))
  })
  try {
    const outcome = await Promise.race([done.then(() => 'done' as const), late])
    if (outcome === 'late') logger.warn({ timeout_ms: timeoutMs }, 'tracing: spans not exported before the shutdown timeout')
  } catch (err) {
    logger.warn({ detail: (err as Error).message }, 'tracing: the last spans could not be exported')
  } finally {
    clearTimeout(timer)
  }
}

// HTTP semantic conventions: a method outside the known set is `_OTHER`, with the method itself
// in http.request.method_original.
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY'])

function methodAttributes(method: string): Record<string, string> {
  return KNOWN_METHODS.has(method)
    ? { [ATTR_HTTP_REQUEST_METHOD]: method }
    : { [ATTR_HTTP_REQUEST_METHOD]: '_OTHER', [ATTR_HTTP_REQUEST_METHOD_ORIGINAL]: method }
}

/** The client's context as the parent: its trace id, its span as parent, its flags and vendor state. */
function parentContext(parent: TraceContext | undefined): Context {
  if (!parent) return ROOT_CONTEXT
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: parent.traceId,
    spanId: parent.parentId,
    traceFlags: Number.parseInt(parent.flags, 16),
    isRemote: true,
    ...(parent.tracestate === undefined ? {} : { traceState: createTraceState(parent.tracestate) }),
  })
}

class OtelServerSpan implements ServerSpan {
  private readonly span: Span
  readonly traceId: string
  readonly spanId: string

  constructor(
    private readonly tracer: Tracer,
    private readonly method: string,
    parent: TraceContext | undefined,
  ) {
    // Named after its route when the route is known (at its end); until then after the method.
    this.span = tracer.startSpan(method, { kind: SpanKind.SERVER }, parentContext(parent))
    const context = this.span.spanContext()
    this.traceId = context.traceId
    this.spanId = context.spanId
  }

  startClient(call: UpstreamCall): ClientSpan {
    return new OtelClientSpan(this.tracer, trace.setSpan(ROOT_CONTEXT, this.span), call)
  }

  end(o: RequestOutcome): void {
    const span = this.span
    if (span.isRecording()) {
      // HTTP semantic conventions: `{method} {http.route}`; the route is the policy's route name.
      if (o.route !== undefined) span.updateName(`${this.method} ${o.route}`)
      span.setAttributes({
        ...methodAttributes(this.method),
        [ATTR_URL_PATH]: o.path,
        [ATTR_URL_SCHEME]: o.scheme,
        [ATTR_HTTP_ROUTE]: o.route,
        [ATTR_HTTP_RESPONSE_STATUS_CODE]: o.status,
        [ATTR_SERVER_ADDRESS]: o.serverAddress,
        [ATTR_SERVER_PORT]: o.serverPort,
        [ATTR_CLIENT_ADDRESS]: o.clientAddress,
        [ATTR_NETWORK_PEER_ADDRESS]: o.peerAddress,
        [ATTR_USER_AGENT_ORIGINAL]: o.userAgent,
        [ATTR_NETWORK_PROTOCOL_VERSION]: o.httpVersion,
        'jwtgate.decision': o.decision,
        'jwtgate.reason': o.reason,
        'jwtgate.issuer': o.issuer,
        'jwtgate.upstream': o.upstream,
        'jwtgate.request_id': o.requestId,
        ...(o.websocket ? { 'jwtgate.websocket': true } : {}),
      })
      // A server span is an error only for a 5xx: a 4xx is the client's (HTTP semantic conventions).
      if (o.status >= 500) {
        span.setAttribute(ATTR_ERROR_TYPE, o.reason ?? String(o.status))
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
    }
    span.end()
  }
}

class OtelClientSpan implements ClientSpan {
  private readonly span: Span
  readonly traceparent: string
  readonly tracestate: string | undefined
  private ended = false

  constructor(tracer: Tracer, parent: Context, call: UpstreamCall) {
    const url = new URL(call.origin)
    // HTTP semantic conventions: a client span is named `{method}`.
    this.span = tracer.startSpan(
      call.method,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          ...methodAttributes(call.method),
          [ATTR_SERVER_ADDRESS]: url.hostname.replace(/^\[(.*)\]$/, '$1'),
          [ATTR_SERVER_PORT]: Number(url.port) || (url.protocol === 'https:' ? 443 : 80),
          [ATTR_URL_FULL]: call.origin + call.path,
          'jwtgate.upstream': call.upstream,
        },
      },
      parent,
    )
    const context = this.span.spanContext()
    this.traceparent = traceparentOf(context.traceId, context.spanId, context.traceFlags.toString(16).padStart(2, '0'))
    this.tracestate = context.traceState?.serialize() || undefined
  }

  answered(status: number): void {
    this.span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
    if (status >= 400) this.span.setAttribute(ATTR_ERROR_TYPE, String(status))
    // A client span is an error for 4xx and 5xx alike (HTTP semantic conventions).
    if (status >= 400) this.span.setStatus({ code: SpanStatusCode.ERROR })
  }

  end(errorType?: string): void {
    if (this.ended) return
    this.ended = true
    if (errorType !== undefined) {
      this.span.setAttribute(ATTR_ERROR_TYPE, errorType)
      this.span.setStatus({ code: SpanStatusCode.ERROR })
    }
    this.span.end()
  }
}
