// An upstream's `health:` check: GET a path of the app in the background, so that /readyz says
// "not ready" while the app behind the gateway cannot answer. A sidecar's app usually binds
// 127.0.0.1, where the kubelet cannot probe it; without this the pod is Ready as soon as the
// keys load, and a slow-starting app gets 502s in every rollout.
//
// Like Envoy's HTTP health check: a fresh upstream is healthy after one passed check,
// `unhealthy_threshold` failures in a row make a healthy one unhealthy and `healthy_threshold`
// passes in a row make it healthy again. A check passes on 200-399 (as a kubelet httpGet probe),
// redirects not followed.
//
// The check speaks the upstream's protocol: HTTP/1.1, or HTTP/2 (node:http2, in clear or over TLS
// with the upstream's CA and client certificate) for `protocol: h2c | h2`, since an HTTP/2-only
// server (a gRPC server) does not answer HTTP/1.1. A gRPC server answers a plain GET with an
// error (grpc-js: 415), so for it `grpc: true` calls the standard health service instead
// (grpc.health.v1.Health/Check, grpc/grpc doc/health-checking.md), as Envoy's gRPC health check
// and the kubelet's grpc probe do: it passes when the call succeeds with SERVING.
import { request as httpRequest, type IncomingMessage } from 'node:http'
import type { ClientHttp2Session, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import type { Logger } from 'pino'
import { defaultsOf } from '../policy/defaults.js'
import { durationMs } from '../policy/duration.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { UpstreamHealthSchema, type UpstreamHealthDocument } from '../policy/schema.js'
import type { UpstreamTls } from '../policy/tls_files.js'
import { connectHttp2 } from './h2_connect.js'

export interface UpstreamHealthRule {
  /** Absolute path (and query) on the upstream's origin; the URL's base path is not prefixed. For gRPC, the health method's. */
  readonly path: string
  /** `grpc: true`: the service name asked about (empty: the whole server); undefined for a GET of `path`. */
  readonly grpcService: string | undefined
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly healthyThreshold: number
  readonly unhealthyThreshold: number
}

/** What a check needs of its upstream (../proxy/upstream.ts). */
export interface CheckedUpstream {
  readonly name: string
  readonly origin: string
  readonly protocol: 'http1' | 'h2c' | 'h2'
  readonly tls: UpstreamTls | null
  /** Changes when origin, connections, protocol or TLS material do. */
  readonly poolKey: string
  readonly health: UpstreamHealthRule | null
}

const DEFAULT = defaultsOf(UpstreamHealthSchema, ['interval', 'timeout', 'healthy_threshold', 'unhealthy_threshold', 'grpc'])
const MIN_INTERVAL_MS = 100
/** grpc/grpc's health.proto: the method, and HealthCheckResponse.ServingStatus by number. */
const GRPC_HEALTH_CHECK = '/grpc.health.v1.Health/Check'
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN']
/** A health answer is a few bytes: more than this is not one. */
const MAX_GRPC_ANSWER_BYTES = 4096

/** `upstreams.<name>.health`: null when absent, undefined after reporting a problem. */
export function compileUpstreamHealth(
  spec: UpstreamHealthDocument | undefined,
  protocol: CheckedUpstream['protocol'],
  at: DocPath,
  problem: OnProblem,
): UpstreamHealthRule | null | undefined {
  if (!spec) return null
  const grpc = spec.grpc ?? DEFAULT.grpc
  const rule: UpstreamHealthRule = {
    path: grpc ? GRPC_HEALTH_CHECK : (spec.path ?? ''),
    grpcService: grpc ? (spec.service ?? '') : undefined,
    intervalMs: durationMs(spec.interval ?? DEFAULT.interval),
    timeoutMs: durationMs(spec.timeout ?? DEFAULT.timeout),
    healthyThreshold: spec.healthy_threshold ?? DEFAULT.healthy_threshold,
    unhealthyThreshold: spec.unhealthy_threshold ?? DEFAULT.unhealthy_threshold,
  }
  let ok = true
  const refuse = (field: string, message: string) => {
    problem([...at, field], message)
    ok = false
  }
  if (grpc && protocol === 'http1') refuse('grpc', 'health.grpc needs an upstream with protocol h2c or h2 (gRPC runs over HTTP/2)')
  if (grpc && spec.path !== undefined) refuse('path', `health.path cannot go with grpc: true (the check calls ${GRPC_HEALTH_CHECK})`)
  if (!grpc && spec.path === undefined) refuse('path', 'health needs a path to GET, or grpc: true')
  if (!grpc && spec.service !== undefined) refuse('service', 'health.service names a gRPC service: it needs grpc: true')
  if (rule.intervalMs < MIN_INTERVAL_MS) refuse('interval', `health.interval must be at least ${MIN_INTERVAL_MS}ms`)
  // A check without a bound would hang on an app that accepts and never answers.
  if (rule.timeoutMs <= 0) refuse('timeout', 'health.timeout must be more than 0')
  return ok ? rule : undefined
}

/** What a check does, in the words of /readyz and the status page: `GET /healthz`, `gRPC health check (orders.v1.Orders)`. */
export function checkWords(rule: UpstreamHealthRule): string {
  if (rule.grpcService === undefined) return `GET ${rule.path}`
  return rule.grpcService ? `gRPC health check (${rule.grpcService})` : 'gRPC health check'
}

export interface UpstreamCheckDetails {
  upstream: string
  path: string
  /** What the check does (checkWords). */
  check: string
  /** undefined until the first check has an outcome. */
  healthy: boolean | undefined
  lastCheckAt: number | undefined
  lastPassed: boolean | undefined
  /** What the last failed check found. */
  lastProblem: string | undefined
}

/** One upstream's check and what it found. */
class HealthCheck {
  /** undefined until the first check has an outcome. */
  healthy: boolean | undefined
  lastProblem: string | undefined
  /** When the last check ended, and whether it passed (the state changes only after a streak). */
  lastCheckAt: number | undefined
  lastPassed: boolean | undefined
  private streak = 0
  private timer: NodeJS.Timeout | undefined
  private inFlight: (() => void) | undefined
  private stopped = false

  constructor(
    readonly upstream: CheckedUpstream,
    readonly rule: UpstreamHealthRule,
    private readonly log: Logger,
  ) {}

  /** Everything the check's outcome depends on: a reload that changes none of it keeps the check. */
  static key(upstream: CheckedUpstream, rule: UpstreamHealthRule): string {
    return `${upstream.poolKey}\n${JSON.stringify(rule)}`
  }

  start(): void {
    void this.run()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.inFlight?.()
  }

  /** Why this upstream keeps the gateway from being ready; undefined when it does not. */
  notReady(): string | undefined {
    if (this.healthy) return undefined
    const where = checkWords(this.rule)
    if (this.healthy === undefined) return `upstream ${this.upstream.name}: not checked yet (${where})`
    return `upstream ${this.upstream.name}: unhealthy (${where}: ${this.lastProblem})`
  }

  private async run(): Promise<void> {
    if (this.stopped) return
    const problem = await this.probe()
    if (this.stopped) return
    this.record(problem)
    this.timer = setTimeout(() => void this.run(), this.rule.intervalMs)
    // The check never keeps a process alive; shutdown stops it anyway.
    this.timer.unref()
  }

  private record(problem: string | undefined): void {
    const was = this.healthy
    this.lastCheckAt = Date.now()
    this.lastPassed = !problem
    if (problem) this.lastProblem = problem
    const fields = { upstream: this.upstream.name, path: this.rule.path }
    if (was === undefined) {
      // A fresh upstream: one outcome decides (it is not ready until then anyway).
      this.healthy = !problem
      this.streak = 0
      if (problem) this.log.warn({ ...fields, problem }, 'upstream unhealthy')
      else this.log.info(fields, 'upstream healthy')
      return
    }
    if (!problem === was) {
      this.streak = 0
      return
    }
    this.streak++
    if (this.streak < (was ? this.rule.unhealthyThreshold : this.rule.healthyThreshold)) return
    this.healthy = !was
    this.streak = 0
    if (problem) this.log.warn({ ...fields, problem, failures: this.rule.unhealthyThreshold }, 'upstream unhealthy')
    else this.log.info(fields, 'upstream healthy again')
  }

  /** One check: undefined when it passed, else what went wrong. */
  private probe(): Promise<string | undefined> {
    if (this.upstream.protocol === 'http1') return this.probeHttp1()
    return this.probeHttp2(this.rule.grpcService === undefined ? getOver2(this.rule.path) : grpcHealthCall(this.rule))
  }

  private probeHttp1(): Promise<string | undefined> {
    const { origin, tls } = this.upstream
    const url = new URL(this.rule.path, origin)
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    return new Promise((resolve) => {
      let timeout: NodeJS.Timeout | undefined
      const done = (outcome: string | undefined) => {
        clearTimeout(timeout)
        this.inFlight = undefined
        resolve(outcome)
      }
      // A new connection each time, as the kubelet's probes: a pool could hide a listener gone.
      let req: ReturnType<typeof send>
      try {
        req = send(url, {
          method: 'GET',
          agent: false,
          headers: { 'user-agent': USER_AGENT, connection: 'close' },
          ...(tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : {}),
        })
      } catch (err) {
        // What Node refuses synchronously (rather than as an 'error' event) fails the check too.
        return done((err as Error).message)
      }
      timeout = setTimeout(() => req.destroy(new Error(`no answer within ${this.rule.timeoutMs}ms`)), this.rule.timeoutMs)
      this.inFlight = () => req.destroy(new Error('stopped'))
      req.on('response', (res: IncomingMessage) => {
        const status = res.statusCode ?? 0
        // Only the status matters; the body is not read.
        res.destroy()
        done(status >= 200 && status < 400 ? undefined : `status ${status}`)
      })
      req.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
      req.end()
    })
  }

  /** One exchange on a new HTTP/2 session (as probeHttp1, a new connection each time), closed after it. */
  private probeHttp2(exchange: Http2Probe): Promise<string | undefined> {
    const { origin, tls, protocol } = this.upstream
    return new Promise((resolve) => {
      let session: ClientHttp2Session | undefined
      let timeout: NodeJS.Timeout | undefined
      let settled = false
      const done = (outcome: string | undefined) => {
        if (settled) return
        settled = true
        clearTimeout(timeout)
        this.inFlight = undefined
        session?.destroy()
        resolve(outcome)
      }
      try {
        // As the forwarder connects: h2 verified as every https upstream, ALPN h2 only.
        session = connectHttp2(origin, protocol, tls)
      } catch (err) {
        return done((err as Error).message)
      }
      timeout = setTimeout(() => done(`no answer within ${this.rule.timeoutMs}ms`), this.rule.timeoutMs)
      this.inFlight = () => done('stopped')
      session.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
      const stream = session.request({ 'user-agent': USER_AGENT, ...exchange.headers }, { endStream: exchange.body === undefined })
      // A failed connection fails its stream too (ERR_HTTP2_STREAM_CANCEL) before the session says
      // why (a certificate that does not verify): the session's reason, when it has one, wins.
      const later = (outcome: string) => setImmediate(() => done(outcome))
      stream.on('error', (err: NodeJS.ErrnoException) => later(err.code ?? err.message))
      let head: IncomingHttpHeaders = {}
      let trailers: IncomingHttpHeaders = {}
      const chunks: Buffer[] = []
      let bytes = 0
      stream.on('response', (headers) => {
        head = headers
        const status = Number(headers[':status'])
        // A plain GET: only the status matters, the body is not read.
        if (!exchange.readsAnswer) done(status >= 200 && status < 400 ? undefined : `status ${status}`)
        else if (status !== 200) done(`status ${status}`)
      })
      stream.on('trailers', (headers) => {
        trailers = headers
      })
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length
        if (bytes > MAX_GRPC_ANSWER_BYTES) return done(`an answer of more than ${MAX_GRPC_ANSWER_BYTES} bytes`)
        chunks.push(chunk)
      })
      stream.on('end', () => done(exchange.outcome(head, trailers, Buffer.concat(chunks))))
      stream.on('close', () => later(`the stream was closed (code ${stream.rstCode})`))
      if (exchange.body !== undefined) stream.end(exchange.body)
    })
  }
}

const USER_AGENT = 'jwtgate-health-check'

/** What one HTTP/2 check sends, and how its answer is judged. */
interface Http2Probe {
  headers: OutgoingHttpHeaders
  body: Buffer | undefined
  /** false: the status alone decides (200-399), the body is not read. */
  readsAnswer: boolean
  outcome(head: IncomingHttpHeaders, trailers: IncomingHttpHeaders, body: Buffer): string | undefined
}

function getOver2(path: string): Http2Probe {
  return { headers: { ':method': 'GET', ':path': path }, body: undefined, readsAnswer: false, outcome: () => undefined }
}

/**
 * grpc.health.v1.Health/Check for `service` (PROTOCOL-HTTP2.md framing: a flag byte, a 4-byte
 * length, the message). The two messages have one field each, so they are written and read here
 * rather than with a protobuf library the gateway would load for nothing else:
 * HealthCheckRequest { string service = 1 }, HealthCheckResponse { ServingStatus status = 1 }.
 */
function grpcHealthCall(rule: UpstreamHealthRule): Http2Probe {
  const name = Buffer.from(rule.grpcService ?? '', 'utf8')
  // Field 1, wire type 2 (length-delimited): tag 0x0a, the length as a varint, the bytes; an empty name is left out.
  const message = name.length ? Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]) : Buffer.alloc(0)
  const frame = Buffer.alloc(5)
  frame.writeUInt32BE(message.length, 1)
  return {
    headers: {
      ':method': 'POST',
      ':path': GRPC_HEALTH_CHECK,
      'content-type': 'application/grpc',
      te: 'trailers',
      // The server may stop working on the call when the check gives up on it.
      'grpc-timeout': `${rule.timeoutMs}m`,
    },
    body: Buffer.concat([frame, message]),
    readsAnswer: true,
    outcome(head, trailers, body) {
      // A refusal comes as Trailers-Only: the status is in the head.
      const status = trailers['grpc-status'] ?? head['grpc-status']
      if (status !== '0') {
        const message = trailers['grpc-message'] ?? head['grpc-message']
        return `grpc-status ${status ?? 'missing'}${typeof message === 'string' && message ? `: ${grpcMessage(message)}` : ''}`
      }
      const serving = servingStatus(body)
      if (serving === undefined) return 'an answer that is not a HealthCheckResponse'
      return serving === 1 ? undefined : (SERVING_STATUS[serving] ?? `status ${serving}`)
    },
  }
}

/** HealthCheckResponse.status from one uncompressed gRPC message; undefined when it is not one. */
function servingStatus(body: Buffer): number | undefined {
  if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) return undefined
  let at = 5
  let status = 0 // proto3: a field left out is its zero value (UNKNOWN).
  while (at < body.length) {
    const tag = readVarint(body, at)
    if (!tag) return undefined
    at = tag.next
    const wireType = tag.value & 7
    if (wireType === 0) {
      const value = readVarint(body, at)
      if (!value) return undefined
      if (tag.value >>> 3 === 1) status = value.value
      at = value.next
    } else if (wireType === 2) {
      // A field this reader does not know (a later version's): skipped.
      const length = readVarint(body, at)
      if (!length) return undefined
      at = length.next + length.value
    } else {
      return undefined
    }
  }
  return at === body.length ? status : undefined
}

function varint(value: number): Buffer {
  const out: number[] = []
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80)
    value >>>= 7
  }
  out.push(value)
  return Buffer.from(out)
}

/** A varint of up to 4 bytes (28 bits: enough for a tag, a length or an enum here), or undefined. */
function readVarint(buf: Buffer, at: number): { value: number; next: number } | undefined {
  let value = 0
  for (let i = 0; i < 4 && at + i < buf.length; i++) {
    const byte = buf[at + i]!
    value |= (byte & 0x7f) << (7 * i)
    if (byte < 0x80) return { value, next: at + i + 1 }
  }
  return undefined
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md); shown decoded, and short. */
function grpcMessage(text: string): string {
  let decoded = text
  try {
    decoded = decodeURIComponent(text)
  } catch {}
  return decoded.slice(0, 200)
}

/**
 * The checks of the live policy's upstreams. `follow` each policy that goes live: an upstream
 * whose address, TLS and `health:` are unchanged keeps its check and its state.
 */
export class UpstreamChecks {
  private readonly checks = new Map<string, { key: string; check: HealthCheck }>()
  private stopped = false

  constructor(private readonly log: Logger) {}

  follow(upstreams: ReadonlyMap<string, CheckedUpstream>): void {
    if (this.stopped) return
    for (const [name, { key, check }] of this.checks) {
      const next = upstreams.get(name)
      if (next?.health && HealthCheck.key(next, next.health) === key) continue
      check.stop()
      this.checks.delete(name)
    }
    for (const upstream of upstreams.values()) {
      if (!upstream.health || this.checks.has(upstream.name)) continue
      const check = new HealthCheck(upstream, upstream.health, this.log)
      this.checks.set(upstream.name, { key: HealthCheck.key(upstream, upstream.health), check })
      check.start()
    }
  }

  /** Why the gateway should not get traffic because of its upstreams; empty when it should. */
  notReady(): string[] {
    return [...this.checks.values()].flatMap(({ check }) => check.notReady() ?? [])
  }

  /** Each checked upstream, healthy or not (not checked yet counts as not), for the metric. */
  states(): Array<{ upstream: string; healthy: boolean }> {
    return [...this.checks.values()].map(({ check }) => ({ upstream: check.upstream.name, healthy: check.healthy === true }))
  }

  /** Each check as the status page shows it. */
  details(): UpstreamCheckDetails[] {
    return [...this.checks.values()].map(({ check }) => ({
      upstream: check.upstream.name,
      path: check.rule.path,
      check: checkWords(check.rule),
      healthy: check.healthy,
      lastCheckAt: check.lastCheckAt,
      lastPassed: check.lastPassed,
      lastProblem: check.lastProblem,
    }))
  }

  stop(): void {
    this.stopped = true
    for (const { check } of this.checks.values()) check.stop()
    this.checks.clear()
  }
}
