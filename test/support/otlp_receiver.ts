// A real OTLP/HTTP receiver on 127.0.0.1: it accepts POST /v1/traces in protobuf (what the
// gateway's exporter sends, gzip or not) and decodes each request with the code the
// OpenTelemetry project generated from the official opentelemetry-proto definitions (protobufjs
// static code, shipped by @opentelemetry/otlp-transformer up to 0.214, installed as the
// devDependency `otlp-proto-generated`: the current transformer writes protobuf by hand and
// ships no decoder). What it received is kept as plain spans for the tests to read.
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'

interface Decoder {
  decode(bytes: Uint8Array): unknown
  toObject(message: unknown, options: Record<string, unknown>): unknown
}

const generated = createRequire(import.meta.url)('otlp-proto-generated/build/src/generated/root.js') as {
  opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: Decoder } } } } }
}
const ExportTraceServiceRequest = generated.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest

/** opentelemetry.proto.trace.v1.Span.SpanKind */
export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const
/** opentelemetry.proto.trace.v1.Status.StatusCode */
export const StatusCode = { UNSET: 0, OK: 1, ERROR: 2 } as const

export type AttributeValue = string | number | boolean | undefined

export interface ReceivedSpan {
  name: string
  kind: number
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  attributes: Record<string, AttributeValue>
  status: { code: number; message?: string }
  resource: Record<string, AttributeValue>
  scope: string
  startNs: number
  endNs: number
}

export interface OtlpReceiver {
  /** The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  url: string
  spans: ReceivedSpan[]
  /** Each export request's path and headers. */
  requests: Array<{ path: string; headers: IncomingHttpHeaders }>
  close(): Promise<void>
}

interface KeyValue {
  key: string
  value?: { stringValue?: string; intValue?: number; boolValue?: boolean; doubleValue?: number }
}

function attributes(list: KeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {}
  for (const { key, value } of list ?? []) out[key] = value?.stringValue ?? value?.intValue ?? value?.boolValue ?? value?.doubleValue
  return out
}

interface DecodedRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: KeyValue[] }
    scopeSpans?: Array<{
      scope?: { name?: string }
      spans?: Array<{
        name: string
        kind: number
        traceId: string
        spanId: string
        parentSpanId?: string
        attributes?: KeyValue[]
        status?: { code?: number; message?: string }
        startTimeUnixNano: number
        endTimeUnixNano: number
      }>
    }>
  }>
}

/** Decodes one ExportTraceServiceRequest into spans. */
export function decodeTraces(body: Buffer): ReceivedSpan[] {
  const message = ExportTraceServiceRequest.decode(body)
  const request = ExportTraceServiceRequest.toObject(message, { longs: Number, enums: Number, bytes: String, defaults: true }) as DecodedRequest
  const out: ReceivedSpan[] = []
  for (const rs of request.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes)
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          name: s.name,
          kind: s.kind,
          // bytes: String gives base64.
          traceId: Buffer.from(s.traceId, 'base64').toString('hex'),
          spanId: Buffer.from(s.spanId, 'base64').toString('hex'),
          parentSpanId: Buffer.from(s.parentSpanId ?? '', 'base64').toString('hex'),
          attributes: attributes(s.attributes),
          status: { code: s.status?.code ?? 0, ...(s.status?.message ? { message: s.status.message } : {}) },
          resource,
          scope: ss.scope?.name ?? '',
          startNs: s.startTimeUnixNano,
          endNs: s.endTimeUnixNano,
        })
      }
    }
  }
  return out
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const receiver: OtlpReceiver = {
    url: '',
    spans: [],
    requests: [],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      receiver.requests.push({ path: req.url ?? '', headers: req.headers })
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/x-protobuf') {
        res.writeHead(400).end()
        return
      }
      let body = Buffer.concat(chunks)
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body)
      receiver.spans.push(...decodeTraces(body))
      // An empty ExportTraceServiceResponse: everything accepted.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return receiver
}
