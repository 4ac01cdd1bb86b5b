// The process logger. Tokens, cookies and secrets never reach a log line: the access log lists
// chosen fields only, and these paths are redacted in case a header object is ever logged.
import pino, { type Logger } from 'pino'

const SERVICE = 'jwtgate'

/**
 * Standard output, written in batches: lines gather until 16 KB or for at most 100 ms, then go
 * out in one asynchronous write (and at exit, synchronously). One write per line cost a write
 * call and a hand-off to libuv's thread pool for every request, about a tenth of the CPU of a
 * request in the benchmark's profile; with 4 KB batches still ~7%, with 16 KB (about 60 lines,
 * sonic-boom's limit is one write of 16 KiB) under 2%: the cost is per write, not per byte.
 */
function stdout(): pino.DestinationStream {
  return pino.destination({ dest: 1, sync: false, minLength: 16000, periodicFlush: 100 })
}

// POSIX PIPE_BUF on Linux: a write to a pipe of at most this many bytes is atomic.
const PIPE_BUF = 4096

/**
 * Standard output shared with other processes (the workers and the primary of `workers: N`
 * write to the same pipe). A write larger than PIPE_BUF may be split and interleaved with
 * another process's write, cutting a JSON line in two; sonic-boom writes its buffer in chunks
 * of at most maxWrite bytes, each made of whole lines, so with maxWrite at PIPE_BUF every write
 * is atomic. (minLength must be below maxWrite.) A single line longer than that cannot be.
 */
function sharedStdout(): pino.DestinationStream {
  return pino.destination({ dest: 1, sync: false, minLength: PIPE_BUF - 256, maxWrite: PIPE_BUF, periodicFlush: 100 })
}

export interface LoggerOptions {
  /** A cluster worker's number (1..N), written as `worker` on every line; implies sharedStdout. */
  worker?: number
  /** Standard output is shared with other processes: keep each write atomic. */
  sharedStdout?: boolean
}

// The fields of createLogger's base beyond service, as JSON text for the access log's lines.
// pino's child loggers inherit from their parent's prototype, so children see it too.
const extraBase = Symbol('jwtgate.extraBase')

export function createLogger(level = 'info', destination?: pino.DestinationStream, options: LoggerOptions = {}): Logger {
  const extra = options.worker === undefined ? {} : { worker: options.worker }
  const logger = pino({
    level,
    base: { service: SERVICE, ...extra },
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'token', 'secret', '*.secret'],
      censor: '[redacted]',
    },
  }, destination ?? (options.worker !== undefined || options.sharedStdout ? sharedStdout() : stdout()))
  Object.defineProperty(logger, extraBase, { value: Object.entries(extra).map(([k, v]) => `,${JSON.stringify(k)}:${JSON.stringify(v)}`).join('') })
  return logger
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
}

const INFO = 30

/**
 * The access log: one line per request, written straight to the logger's destination in the
 * shape pino would give it (`{"level":30,"time":…,"service":"jwtgate","request_id":…,…,"msg":"request"}`).
 * pino would cost a child logger per request and a pass of the redaction over every line
 * (about a tenth of a request's CPU in the benchmark's profile); these fields are chosen and hold
 * no secret, so none is needed. Written only while the logger's level admits info, read per line,
 * so a reload's level change applies at once.
 */
export function accessLogger(logger: Logger): (fields: AccessFields) => void {
  const stream = (logger as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym]!
  const service = `"service":"${SERVICE}"${(logger as unknown as Record<symbol, string | undefined>)[extraBase] ?? ''}`
  return (f) => {
    if (logger.levelVal > INFO) return
    stream.write(`{"level":${INFO},"time":${Date.now()},${service},"request_id":${JSON.stringify(f.requestId)}` +
      text('method', f.method) + text('path', f.path) + text('route', f.route) + text('upstream', f.upstream) +
      `,"status":${f.status},"ms":${f.ms}` + text('issuer', f.issuer) + text('sub', f.sub) + text('reason', f.reason) +
      text('report', f.report) + (f.reportStatus === undefined ? '' : `,"report_status":${f.reportStatus}`) + text('report_reason', f.reportReason) +
      (f.websocket ? ',"websocket":true' : '') + ',"msg":"request"}\n')
  }
}

function text(name: string, value: string | undefined): string {
  return value === undefined ? '' : `,"${name}":${JSON.stringify(value)}`
}
