// Upstreams spoken to over HTTP/2 (`protocol: h2c` or `h2`), on node:http2 client sessions, and
// one request forwarded on them with its answer streamed back.
// Why not undici (7.30, the HTTP/1.1 forwarder's): its HTTP/2 client (lib/dispatcher/client-h2.js)
// counts itself busy while any request runs when the next one is not idempotent or has a streamed
// body (`busy()`), so every POST, every gRPC call, took a connection of its own: measured, three
// concurrent streaming POSTs on one H2CClient reached the server one after the other. It lost the
// response trailers (`grpc-status`) when they came after data ('end' completed the request before
// 'trailers' ran: the handler got `{}`), sends no request trailers (a TODO in writeH2), and cancels
// with RST_STREAM(NO_ERROR). Here each origin has up to `connections` sessions, each carrying as
// many streams as the upstream allows; trailers go both ways; a cancel is RST_STREAM(CANCEL) both ways.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { sendHeadWithEnd, writeForwardedHead } from '../http/h2_response.js'
import { watchBody, type BodyCount, type BodyLimits } from './body_limit.js'
import { HOP_BY_HOP_RESPONSE } from '../http/owned_headers.js'
import type { Upstream } from './upstream.js'
import { ClientGone } from './client_gone.js'
import { connectHttp2 } from './h2_connect.js'

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants

/** What sessions to one HTTP/2 upstream are built from (a subset of Upstream). */
type H2Target = Pick<Upstream, 'origin' | 'connections' | 'tls' | 'protocol'>

interface Tracked {
  session: ClientHttp2Session
  open: number
}

/** The sessions to one HTTP/2 upstream origin. */
export class H2Upstream {
  private readonly sessions: Tracked[] = []

  constructor(
    private readonly target: H2Target,
    private readonly connectTimeoutMs: number,
  ) {}

  /** The :scheme of its requests. */
  get scheme(): 'http' | 'https' {
    return this.target.protocol === 'h2' ? 'https' : 'http'
  }

  /** A new stream on a session with room for it (a new session when those open are full and fewer than `connections`). */
  request(headers: OutgoingHttpHeaders, options: http2.ClientSessionRequestOptions): { stream: ClientHttp2Stream; done: () => void } {
    const tracked = this.pick()
    tracked.open++
    const stream = tracked.session.request(headers, options)
    let counted = true
    const done = () => {
      if (!counted) return
      counted = false
      tracked.open--
    }
    stream.once('close', done)
    return { stream, done }
  }

  private pick(): Tracked {
    let best: Tracked | undefined
    for (const t of this.sessions) {
      if (t.session.closed || t.session.destroyed) continue
      const room = (t.session.remoteSettings.maxConcurrentStreams ?? 100) - t.open
      if (room > 0 && (!best || t.open < best.open)) best = t
    }
    if (best) return best
    if (this.sessions.length < this.target.connections) return this.connect()
    // Every session full: the least busy one queues the stream (nghttp2 sends it when a stream closes).
    let least = this.sessions[0]!
    for (const t of this.sessions) if (t.open < least.open) least = t
    return least
  }

  private connect(): Tracked {
    const { origin, tls, protocol } = this.target
    const session = connectHttp2(origin, protocol, tls)
    const tracked: Tracked = { session, open: 0 }
    this.sessions.push(tracked)
    // Streams see the failure; the session's own error needs a listener not to throw.
    session.on('error', () => {})
    const timer = setTimeout(() => session.destroy(connectTimeout(this.connectTimeoutMs)), this.connectTimeoutMs)
    session.once('connect', () => clearTimeout(timer))
    const forget = () => {
      clearTimeout(timer)
      const i = this.sessions.indexOf(tracked)
      if (i >= 0) this.sessions.splice(i, 1)
    }
    session.once('close', forget)
    // After GOAWAY the session takes no new stream; those in flight finish on it.
    session.once('goaway', forget)
    // An idle session does not keep the process alive (a stream does, while it is open).
    session.unref()
    return tracked
  }

  /**
   * For the status page: sessions open (connecting included), those carrying a stream, streams
   * open, and streams waiting for room (beyond what the upstream's SETTINGS_MAX_CONCURRENT_STREAMS
   * allows: nghttp2 holds them). A session that got GOAWAY is no longer counted, its last streams either.
   */
  stats(): { sessions: number; busy: number; streams: number; queued: number } {
    let sessions = 0
    let busy = 0
    let streams = 0
    let queued = 0
    for (const t of this.sessions) {
      if (t.session.closed || t.session.destroyed) continue
      sessions++
      if (t.open > 0) busy++
      streams += t.open
      queued += Math.max(0, t.open - (t.session.remoteSettings.maxConcurrentStreams ?? 100))
    }
    return { sessions, busy, streams, queued }
  }

  /** Closes the sessions once their streams finish (a reload that changed or removed the upstream). */
  async close(): Promise<void> {
    await Promise.all(this.sessions.map((t) => new Promise<void>((resolve) => t.session.close(resolve))))
  }

  async destroy(): Promise<void> {
    for (const t of [...this.sessions]) t.session.destroy()
  }
}

function connectTimeout(ms: number): Error {
  // undici's code for the same failure, so one failure table serves both forwarders.
  return Object.assign(new Error(`no HTTP/2 connection to the upstream within ${ms} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' })
}

function headersTimeout(ms: number): Error {
  return Object.assign(new Error(`the upstream sent no answer within ${ms} ms`), { code: 'UND_ERR_HEADERS_TIMEOUT' })
}

/** What an H2Exchange asks of the gateway: the same three answers as the HTTP/1.1 forwarder's owner. */
export interface ExchangeOwner {
  /** The head for the client from the upstream's (lower-case names; its pseudo-header fields are the owner's to leave out); undefined refuses the status. */
  responseHead(statusCode: number, headers: IncomingHttpHeaders): OutgoingHttpHeaders | undefined
  /** Answers a failure that came before anything of the upstream's answer was written. */
  failed(error: Error): void
  /** The client went away before the answer was complete. */
  clientLeft(): void
  /**
   * The upstream failed or was cut after the head was written: how to end the client's answer.
   * Returns the trailers to end it with (gRPC: a status), or undefined to reset the client's stream.
   */
  failedMidAnswer(error: Error): OutgoingHttpHeaders | undefined
  /** The exchange is over: answered (no error), failed, or the client left (ClientGone); the answer body's bytes. */
  finished?(error: Error | undefined, bodyBytes: number): void
}

export interface H2Request {
  method: string
  path: string
  authority: string
  headers: OutgoingHttpHeaders
  body: Readable | null
  /** The body's limits (limits.max_body_bytes, min_body_rate), watched on its way (./body_limit.ts watchBody). */
  bodyLimits: BodyLimits
  /** Where the body's bytes passed on to the upstream are counted (the access line's request_bytes). */
  count?: BodyCount
  /** Until the upstream's head, and between two parts of its answer; 0 for none. */
  timeoutMs: number
  /** `body` is the client's own HTTP/2 stream (read directly, not through node:http2's compatibility request). */
  bodyIsClientStream?: boolean
  /** The client announced request trailers (a Trailer field): they are forwarded when they come. */
  trailers: (() => IncomingHttpHeaders | undefined) | undefined
}

/**
 * One request on an HTTP/2 upstream, its answer streamed to the client's response (HTTP/1.1 or
 * HTTP/2): backpressure both ways (a client that does not read pauses the upstream stream, whose
 * flow-control window then stops the upstream), trailers both ways, a cancel either way ending
 * the other side's stream with RST_STREAM(CANCEL) (an HTTP/1.1 client's connection is closed).
 */
export class H2Exchange {
  private stream: ClientHttp2Stream | undefined
  private timer: NodeJS.Timeout | undefined
  /** The upstream's head came: the timer measures pauses in its answer. */
  private answered = false
  /** Nothing more to do: answered, failed, or the client left. */
  private settled = false
  /** The upstream's head was given to the client's response (which may hold it back until the end: sendHeadWithEnd). */
  private headWritten = false
  private bodyBytes = 0
  private resumeOnDrain: (() => void) | undefined
  private trailers: IncomingHttpHeaders | undefined
  private stopWatching: () => void = () => {}
  /** Stops passing the client's body on (the rest of it is not read). */
  private stopBody: () => void = () => {}

  constructor(
    private readonly res: ServerResponse,
    private readonly owner: ExchangeOwner,
  ) {}

  send(upstream: H2Upstream, req: H2Request): void {
    // Built in one pass rather than spread and `delete headers.host`: a delete drops the object
    // into dictionary mode, which node:http2 then walks for every field.
    const headers: OutgoingHttpHeaders = { ':method': req.method, ':path': req.path, ':authority': req.authority, ':scheme': upstream.scheme }
    for (const name in req.headers) if (name !== 'host') headers[name] = req.headers[name]
    const endStream = req.body === null
    const { stream } = upstream.request(headers, { endStream, waitForTrailers: !endStream && req.trailers !== undefined })
    this.stream = stream
    this.res.once('close', () => this.clientClosed())
    // One timer for the exchange: until the upstream's head, then refreshed by each part of its answer.
    if (req.timeoutMs > 0) this.timer = setTimeout(() => this.onFailure(this.timedOut(req.timeoutMs)), req.timeoutMs)
    stream.on('response', (h, flags) => this.onResponse(h, (flags & NGHTTP2_FLAG_END_STREAM) !== 0))
    stream.on('trailers', (h) => {
      this.trailers = h
    })
    stream.on('data', (chunk: Buffer) => this.onData(chunk))
    // Reset by the upstream (RST_STREAM), or the session went away, before the answer ended:
    // node:http2 may still end the readable side ('end') before it knows the code, so the end is
    // taken as one only a turn later, or at 'close', when rstCode says how the stream closed.
    const reset = () => this.onFailure(Object.assign(new Error(`the upstream closed the stream (code ${stream.rstCode})`), { rstCode: stream.rstCode }))
    let ended = false
    const finish = () => {
      if (this.settled) return
      if (ended && !stream.aborted && (stream.rstCode === undefined || stream.rstCode === NGHTTP2_NO_ERROR)) this.onEnd()
      else reset()
    }
    stream.on('end', () => {
      ended = true
      setImmediate(finish)
    })
    stream.on('error', (err: Error) => this.onFailure(err))
    stream.on('close', finish)
    if (req.trailers) {
      stream.on('wantTrailers', () => {
        const t = req.trailers?.()
        stream.sendTrailers(t ? forwardedTrailers(t) : {})
      })
    }
    const body = req.body
    if (body) {
      // The client's own HTTP/2 stream reports its failures by closing, which the response's
      // 'close' passes on (clientClosed); another body's error fails the exchange.
      if (!req.bodyIsClientStream) body.on('error', (err: Error) => this.onFailure(err))
      this.stopWatching = watchBody(
        body,
        req.bodyLimits,
        (err) => this.onFailure(err),
        () => stream.writableLength > 0,
      )
      this.sendBody(body, stream, req.count)
    }
  }

  /**
   * The body to the upstream stream with backpressure, as pipe() would, without pipe()'s seven
   * listeners on each side and their removal (a few per cent of a unary call in a profile).
   */
  private sendBody(body: Readable, stream: ClientHttp2Stream, count: BodyCount | undefined): void {
    const resume = () => body.resume()
    if (count) count.requestBytes = 0
    const onData = (chunk: Buffer) => {
      if (count) count.requestBytes! += chunk.length
      if (!stream.write(chunk)) {
        body.pause()
        stream.once('drain', resume)
      }
    }
    const onEnd = () => stream.end()
    body.on('data', onData)
    body.once('end', onEnd)
    this.stopBody = () => {
      body.off('data', onData)
      body.off('end', onEnd)
      stream.off('drain', resume)
    }
  }

  private timedOut(ms: number): Error {
    if (!this.answered) return headersTimeout(ms)
    return Object.assign(new Error(`the upstream paused its answer for more than ${ms} ms`), { code: 'UND_ERR_BODY_TIMEOUT' })
  }

  private onResponse(upstreamHeaders: IncomingHttpHeaders, ended: boolean): void {
    if (this.settled) return
    const status = Number(upstreamHeaders[':status'])
    // 1xx interim answers are the hop's own (node:http2 gives them as 'headers', not 'response').
    const head = this.owner.responseHead(status, upstreamHeaders)
    if (head === undefined) {
      this.onFailure(new Error(`the upstream answered with status ${status}`))
      return
    }
    // Until the end, the longest pause between two parts of the answer.
    this.answered = true
    this.timer?.refresh()
    // An answer that is only a head (gRPC's Trailers-Only): passed on as one, on HTTP/2.
    if (ended) sendHeadWithEnd(this.res)
    try {
      writeForwardedHead(this.res, status, head)
      this.headWritten = true
    } catch (err) {
      this.onFailure(err as Error)
    }
  }

  private onData(chunk: Buffer): void {
    if (this.settled) return
    if (this.timer) this.timer.refresh()
    this.bodyBytes += chunk.length
    if (!this.res.write(chunk)) {
      const stream = this.stream!
      stream.pause()
      this.resumeOnDrain ??= () => stream.resume()
      this.res.once('drain', this.resumeOnDrain)
    }
  }

  private onEnd(): void {
    if (this.settled) return
    // The stream ended without a head: nothing to forward.
    if (!this.headWritten) {
      this.onFailure(new Error('the upstream ended the stream without an answer'))
      return
    }
    this.settled = true
    clearTimeout(this.timer)
    this.stopWatching()
    this.stopBody()
    if (this.trailers) this.res.addTrailers(forwardedTrailers(this.trailers))
    this.res.end()
    this.owner.finished?.(undefined, this.bodyBytes)
  }

  /** Stops sending the client's body upstream (the rest of it is not read) and cancels the upstream stream. */
  private stopUpstream(): void {
    this.stopWatching()
    this.stopBody()
    const stream = this.stream
    if (stream) cancel(stream)
  }

  private onFailure(error: Error): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    this.stopUpstream()
    // failed() or failedMidAnswer() names the failure first, then the exchange is over.
    try {
      this.answerFailure(error)
    } finally {
      this.owner.finished?.(error, this.bodyBytes)
    }
  }

  private answerFailure(error: Error): void {
    if (!this.headWritten) {
      this.owner.failed(error)
      return
    }
    // Mid-answer: the client must not take what it got for the whole answer. The upstream's own
    // reset is passed on as it is (RST_STREAM both ways); a failure of the gateway's finding
    // (a timeout, the connection lost) is the owner's to word.
    const rstCode = (error as { rstCode?: number }).rstCode
    if (rstCode !== undefined && rstCode !== NGHTTP2_NO_ERROR) {
      this.owner.failedMidAnswer(error)
      resetClient(this.res, rstCode)
      return
    }
    const trailers = this.owner.failedMidAnswer(error)
    if (trailers) {
      this.res.addTrailers(trailers)
      this.res.end()
      return
    }
    resetClient(this.res, undefined)
  }

  private clientClosed(): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    // The client cancelled (RST_STREAM) or its connection went: so does the upstream stream.
    this.stopUpstream()
    this.owner.clientLeft()
    this.owner.finished?.(new ClientGone(), this.bodyBytes)
  }

  /**
   * Ends the exchange from the gateway's side (the token expired, the call's deadline passed):
   * the upstream stream is cancelled, and the client's answer ended with `failed` as a failure
   * before the head, or with `failedMidAnswer`'s trailers after it.
   */
  cut(error: Error): void {
    this.onFailure(error)
  }
}

/**
 * RST_STREAM(CANCEL) to the upstream, and nothing else. node:http2's close() first ends the
 * writable side when it is still open (closeStream in lib/internal/http2/core.js calls end(),
 * which sends END_STREAM), so the upstream would take a cut-off request body for a whole one
 * before the reset came; measured: a test upstream answered the stalled upload as complete.
 * Marked as ending, the side is not ended: close() sends the reset alone.
 */
function cancel(stream: ClientHttp2Stream): void {
  if (stream.closed) return
  const writable = (stream as unknown as { _writableState?: { ending: boolean } })._writableState
  if (writable && !writable.ending) writable.ending = true
  stream.close(NGHTTP2_CANCEL)
}

/** Ends the client's answer as cut off: an HTTP/2 stream is reset (with the upstream's code when it reset), an HTTP/1.1 connection closed. */
function resetClient(res: ServerResponse, code: number | undefined): void {
  const stream = (res as unknown as { stream?: http2.ServerHttp2Stream }).stream
  if (stream && typeof stream.close === 'function') {
    stream.close(code !== undefined && code !== NGHTTP2_NO_ERROR ? code : NGHTTP2_CANCEL)
    return
  }
  res.destroy()
}

/** Trailers passed on, either way: without pseudo-header or hop-by-hop fields. */
function forwardedTrailers(trailers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (const name in trailers) if (name.charCodeAt(0) !== 58 && !HOP_BY_HOP_RESPONSE.has(name)) out[name] = trailers[name]
  return out
}
