// The process logger. Tokens, cookies and secrets never reach a log line: the access log lists
// chosen fields only, and these paths are redacted in case a header object is ever logged.
import pino, { type Logger } from 'pino'
import { BatchedOutput, DROPPED, type OutputLosses } from './log_output.js'

const SERVICE = 'jwtgate'

// POSIX PIPE_BUF on Linux: a write to a pipe of at most this many bytes is atomic.
const PIPE_BUF = 4096

// Standard output shared with other processes (the workers and the primary of `workers: N`
// write to the same pipe): a write larger than PIPE_BUF may be split and interleaved with
// another process's write, cutting a JSON line in two. Each write is made of whole lines and at
// most batchBytes long, so with batches of PIPE_BUF every write is atomic. A single line longer
// than that cannot be.

/**
 * Standard output, written in batches (src/log_output.ts): lines gather until the batch is full
 * (64 KB) or for at most 100 ms, then go out in one asynchronous write (and at exit,
 * synchronously). One write per line cost a write call and a hand-off to libuv's thread pool for
 * every request, about a tenth of the CPU of a request in the benchmark's profile; 64 KB batches
 * rather than 16 KB cost 2.0-2.2 µs of the process's CPU a line against 3.4-4.4 (system time
 * 0.2-0.4 against 1.0-1.5: a fourth of the write calls, each of ~170 lines). 256 batches (16 MB)
 * at most wait for a slow reader; lines beyond are dropped and counted.
 */
function stdout(shared: boolean): pino.DestinationStream {
  const batchBytes = shared ? PIPE_BUF : 64 * 1024
  return new BatchedOutput({ fd: 1, batchBytes, flushMs: 100, maxBatches: (16 * 1024 * 1024) / batchBytes })
}

/** A logger's batched standard output; undefined when it writes elsewhere (a test's capture). */
function outputOf(logger: Logger): BatchedOutput | undefined {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym]
  return stream instanceof BatchedOutput ? stream : undefined
}

/** What a logger's standard output could not write. */
export function outputLosses(logger: Logger): OutputLosses | undefined {
  return outputOf(logger)?.losses
}

/** Waits until a logger's standard output has written what it holds, at most timeoutMs (before a process exits). */
export async function drainLog(logger: Logger, timeoutMs: number): Promise<void> {
  await outputOf(logger)?.drain(timeoutMs)
}

/** How every line writes its time and level: `log.time` and `log.level_label` in the policy. */
export interface LineFormat {
  /** `epoch`: milliseconds since 1970 (a number); `iso`: ISO-8601 in UTC with milliseconds (a string). */
  time?: 'epoch' | 'iso'
  /** `level` as its name (`"info"`) instead of pino's number (30). */
  levelLabel?: boolean
}

/** `log.time` and `log.level_label` of a policy document (read before it is compiled: the logger comes first). */
export function lineFormat(document: { log?: { time?: 'epoch' | 'iso'; level_label?: boolean } } | undefined): LineFormat {
  return { time: document?.log?.time, levelLabel: document?.log?.level_label }
}

export interface LoggerOptions extends LineFormat {
  /** A cluster worker's number (1..N), written as `worker` on every line; implies sharedStdout. */
  worker?: number
  /** Standard output is shared with other processes: keep each write atomic. */
  sharedStdout?: boolean
}

/** pino's own options for a line format: its ISO time function and its level formatter. */
function formatOptions(format: LineFormat): pino.LoggerOptions {
  return {
    ...(format.time === 'iso' ? { timestamp: pino.stdTimeFunctions.isoTime } : {}),
    ...(format.levelLabel === true ? { formatters: { level: (label: string) => ({ level: label }) } } : {}),
  }
}

export function createLogger(level = 'info', destination?: pino.DestinationStream, options: LoggerOptions = {}): Logger {
  const output = destination ?? stdout(options.worker !== undefined || options.sharedStdout === true)
  const logger = pino(
    {
      level,
      ...formatOptions(options),
      base: { service: SERVICE, ...(options.worker === undefined ? {} : { worker: options.worker }) },
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'token', 'secret', '*.secret'],
        censor: '[redacted]',
      },
    },
    output,
  )
  // Dropped lines are reported in the logger's own line format.
  if (output instanceof BatchedOutput) output.reportDrops = (count) => logger.warn({ dropped_lines: count }, DROPPED)
  return logger
}

/**
 * A logger for the lines a process writes as it fails to start (a bad policy, a busy port):
 * the same shape as every other line, written synchronously to standard error before it exits.
 */
export function startupLogger(format: LineFormat = {}): Logger {
  return pino({ ...formatOptions(format), base: { service: SERVICE } }, pino.destination({ dest: 2, sync: true }))
}

/** The fields of one access-log line; an undefined field is left out, as pino does. */
export interface AccessFields {
  requestId: string
  method: string | undefined
  path: string
  route: string | undefined
  upstream: string | undefined
  status: number
  ms: number
  issuer: string | undefined
  sub: string | undefined
  reason: string | undefined
  /** `mode: report` routes: allow or deny, and what enforcing would have answered. */
  report: 'allow' | 'deny' | undefined
  reportStatus: number | undefined
  reportReason: string | undefined
  /** A WebSocket tunnel's line. */
  websocket: boolean | undefined
  /** The client's address (trusted_proxies honoured: src/proxy/client_address.ts). */
  client: string | undefined
  /** The User-Agent header, cut to USER_AGENT_MAX characters. */
  userAgent: string | undefined
  /** Body bytes passed on each way (undefined on a WebSocket tunnel's line). */
  requestBytes: number | undefined
  responseBytes: number | undefined
  /** The upstream's status and the time to its response head, when it answered. */
  upstreamStatus: number | undefined
  upstreamMs: number | undefined
  /** The trace (W3C trace id) and the gateway's span in it, when there is a trace context. */
  traceId: string | undefined
  spanId: string | undefined
}

const INFO = 30

/** The longest User-Agent a line (or a span) carries; browsers' are under 200 characters. */
export const USER_AGENT_MAX = 256

/**
 * The access log: one line per request, written straight to the logger's destination in the
 * shape pino would give it (`{"level":30,"time":…,"service":"jwtgate","request_id":…,…,"msg":"request"}`).
 * pino would cost a child logger per request and a pass of the redaction over every line
 * (about a tenth of a request's CPU in the benchmark's profile); these fields are chosen and hold
 * no secret, so none is needed. Written only while the logger's level admits info, read per line,
 * so a reload's level change applies at once.
 */
export function accessLogger(logger: Logger): (fields: AccessFields) => void {
  const internals = logger as unknown as Record<symbol, unknown>
  const stream = internals[pino.symbols.streamSym] as pino.DestinationStream
  // The base fields (service, a worker's number) and any bindings, serialized once by pino.
  const bindings = internals[pino.symbols.chindingsSym] as string
  // `{"level":30` or `{"level":"info"` (log.level_label), as pino caches it for the logger, and
  // pino's time function (`,"time":…`, epoch or ISO by log.time): the lines match pino's.
  const level = (internals[pino.symbols.lsCacheSym] as Record<number, string>)[INFO]
  const time = internals[pino.symbols.timeSym] as () => string
  return (f) => {
    if (logger.levelVal > INFO) return
    stream.write(
      `${level}${time()}${bindings},"request_id":${SAFE_ID.test(f.requestId) ? `"${f.requestId}"` : JSON.stringify(f.requestId)}` +
        named('method', f.method) +
        text('path', f.path) +
        named('route', f.route) +
        named('upstream', f.upstream) +
        `,"status":${f.status},"ms":${f.ms}` +
        named('issuer', f.issuer) +
        text('sub', f.sub) +
        named('reason', f.reason) +
        named('report', f.report) +
        (f.reportStatus === undefined ? '' : `,"report_status":${f.reportStatus}`) +
        named('report_reason', f.reportReason) +
        (f.websocket ? ',"websocket":true' : '') +
        text('client_address', f.client) +
        (f.userAgent === undefined ? '' : text('user_agent', f.userAgent.length > USER_AGENT_MAX ? f.userAgent.slice(0, USER_AGENT_MAX) : f.userAgent)) +
        (f.requestBytes === undefined ? '' : `,"request_bytes":${f.requestBytes}`) +
        (f.responseBytes === undefined ? '' : `,"response_bytes":${f.responseBytes}`) +
        (f.upstreamStatus === undefined ? '' : `,"upstream_status":${f.upstreamStatus}`) +
        (f.upstreamMs === undefined ? '' : `,"upstream_ms":${f.upstreamMs}`) +
        // Trace and span ids are hex digits by construction (src/http/trace_context.ts, the SDK's ids).
        (f.traceId === undefined ? '' : `,"trace_id":"${f.traceId}"`) +
        (f.spanId === undefined ? '' : `,"span_id":"${f.spanId}"`) +
        ',"msg":"request"}\n',
    )
  }
}

// Request ids are ours or match this (src/gateway/app.ts): nothing in them needs escaping in JSON.
const SAFE_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

function text(name: string, value: string | undefined): string {
  return value === undefined ? '' : `,"${name}":${JSON.stringify(value)}`
}

/**
 * A field whose values come from a small set (methods, names from the policy, reason codes),
 * with each `,"name":"value"` fragment built once: a third of the cost of a line (0.9 -> 0.3 µs).
 * Bounded, so names left behind by many reloads cannot pile up.
 */
const fragments = new Map<string, Map<string, string>>()

function named(name: string, value: string | undefined): string {
  if (value === undefined) return ''
  let byValue = fragments.get(name)
  if (!byValue) fragments.set(name, (byValue = new Map()))
  let fragment = byValue.get(value)
  if (fragment === undefined) {
    if (byValue.size >= 1000) byValue.clear()
    byValue.set(value, (fragment = text(name, value)))
  }
  return fragment
}

type LogMethod = (...args: unknown[]) => void

/**
 * A request's logger (fastify's request.log) whose pino child is made on its first line. fastify
 * makes a child for every request, 1.4% of a request's CPU in the benchmark's profile, while the
 * proxy writes through it only when something fails.
 */
export class LazyChildLogger {
  private made: Logger | undefined

  constructor(
    private readonly parent: Logger,
    private readonly bindings: pino.Bindings,
    private readonly options: pino.ChildLoggerOptions,
  ) {}

  private get logger(): Logger {
    return (this.made ??= this.parent.child(this.bindings, this.options))
  }

  get level(): string {
    return this.made?.level ?? this.options.level ?? this.parent.level
  }

  set level(level: string) {
    this.logger.level = level
  }

  fatal(...args: unknown[]): void {
    ;(this.logger.fatal as LogMethod).apply(this.logger, args)
  }
  error(...args: unknown[]): void {
    ;(this.logger.error as LogMethod).apply(this.logger, args)
  }
  warn(...args: unknown[]): void {
    ;(this.logger.warn as LogMethod).apply(this.logger, args)
  }
  info(...args: unknown[]): void {
    ;(this.logger.info as LogMethod).apply(this.logger, args)
  }
  debug(...args: unknown[]): void {
    ;(this.logger.debug as LogMethod).apply(this.logger, args)
  }
  trace(...args: unknown[]): void {
    ;(this.logger.trace as LogMethod).apply(this.logger, args)
  }
  silent(): void {}

  child(bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger {
    return this.logger.child(bindings, options)
  }
}
