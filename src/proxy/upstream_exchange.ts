// One request forwarded to an upstream and its answer streamed back, on undici's dispatcher API
// with a handler of its own (undici's new-style handler: onRequestStart, onResponseStart,
// onResponseData, onResponseEnd, onResponseError; lib/handler/unwrap-handler.js), instead of
// undici's request() and @fastify/reply-from: no response stream object, no pipe, no URL parse
// and no header copies per request (docs/design.md, "Forwarding").
// - The upstream's status and headers are written straight to the client's response, and its
//   body chunk by chunk: a chunk the client's socket cannot take pauses the upstream until the
//   socket drains (backpressure both ways: undici reads the request body only as fast as the
//   upstream takes it). A body that comes in one chunk with its Content-Length, or chunked
//   within the tick of the head, goes out with the head in one write.
// - The client going away aborts the upstream request (its connection is closed by undici);
//   the upstream failing after the head was written destroys the client's connection, so the
//   client never takes a cut-off body for a whole one.
// - A request waits for a free connection at most `waitMs`, then fails with UpstreamBusy:
//   undici's Pool queues without a bound, and its headers and body timeouts start only once a
//   connection writes the request.
// What the answer's head carries and how a failure is answered are the owner's (a subclass).
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import { ClientGone } from './client_gone.js'
import { UpstreamBusy } from './upstream_pools.js'

export { ClientGone }

/** undici's controller of one dispatched request (types/dispatcher.d.ts, DispatchController). */
type Controller = Dispatcher.DispatchController

export abstract class UpstreamExchange implements Dispatcher.DispatchHandler {
  private controller: Controller | undefined
  private timer: NodeJS.Timeout | undefined
  /** A failure was answered (or the client left): later calls from undici are ignored. */
  private settled = false
  /** The client's response was ended or destroyed. */
  private done = false
  /** Bytes of the body still to come by the upstream's Content-Length; NaN when it has none. */
  private remaining = Number.NaN
  private resumeOnDrain: (() => void) | undefined
  /** finished() was called. */
  private over = false
  /** Bytes of the upstream's body passed on to the client so far. */
  protected bodyBytes = 0

  constructor(
    protected readonly res: ServerResponse,
    private readonly waitMs: number,
  ) {}

  /**
   * The head for the client: `headers` are the upstream's (lower-case names, undici's parse);
   * undefined when the status cannot be forwarded (the exchange then fails as unreachable).
   */
  protected abstract responseHead(statusCode: number, headers: IncomingHttpHeaders): OutgoingHttpHeaders | undefined

  /** Answers a failure that came before anything of the upstream's answer was written. */
  protected abstract failed(error: Error): void

  /** The client's connection closed before the answer was complete (the upstream request is aborted). */
  protected clientLeft(): void {}

  /**
   * The exchange is over, once: the upstream's answer passed on whole (no error), or it failed
   * (after failed() answered), broke off mid-body, or the client left (ClientGone).
   */
  protected finished(_error: Error | undefined): void {}

  private finish(error: Error | undefined): void {
    if (this.over) return
    this.over = true
    this.finished(error)
  }

  /** Sends the request through `dispatcher`; the answer arrives on this handler. */
  send(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions): void {
    if (this.waitMs > 0) this.timer = setTimeout(() => this.expire(), this.waitMs)
    this.res.once('close', () => this.clientClosed())
    dispatcher.dispatch(options, this)
  }

  private expire(): void {
    this.timer = undefined
    if (this.controller || this.settled) return
    this.settle(new UpstreamBusy(this.waitMs))
  }

  private clientClosed(): void {
    if (this.done) return
    this.done = true
    clearTimeout(this.timer)
    // Nothing to answer any more; the upstream request, if written, is aborted.
    this.settled = true
    const gone = new ClientGone()
    this.controller?.abort(gone)
    this.clientLeft()
    this.finish(gone)
  }

  /** Fails the exchange (failed(), then finished()); later calls from undici are ignored. */
  protected settle(error: Error): void {
    clearTimeout(this.timer)
    this.settled = true
    this.failed(error)
    this.finish(error)
  }

  onRequestStart(controller: Controller): void {
    // A connection is writing the request: it waited no longer than its bound.
    if (this.settled) {
      // Given up while it waited (UpstreamBusy), or the client left: nothing is written.
      controller.abort(this.done ? new ClientGone() : new UpstreamBusy(this.waitMs))
      return
    }
    clearTimeout(this.timer)
    this.timer = undefined
    this.controller = controller
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx interim answers (RFC 9110 §15.2) are the hop's own; 100 never comes (Expect is not forwarded).
    if (statusCode < 200 || this.settled) return
    const head = statusCode <= 599 ? this.responseHead(statusCode, headers) : undefined
    if (head === undefined) {
      controller.abort(new Error(`the upstream answered with status ${statusCode}`))
      return
    }
    try {
      this.res.writeHead(statusCode, head)
    } catch (err) {
      // A header Node refuses to write (a value with bytes it does not allow): nothing was sent yet.
      controller.abort(err as Error)
      return
    }
    const length = head['content-length']
    if (typeof length === 'string') {
      this.remaining = Number(length)
    } else {
      // A chunked answer: what arrives in this tick (often all of a small one) goes out with the
      // head in one write, and nothing waits longer than the tick.
      this.res.cork()
      process.nextTick(uncork, this.res)
    }
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.done) return
    this.bodyBytes += chunk.length
    if (chunk.length === this.remaining) {
      // The whole (rest of the) body: with the head still unwritten, one write for both.
      this.done = true
      this.finish(undefined)
      this.res.end(chunk)
      return
    }
    this.remaining -= chunk.length
    if (!this.res.write(chunk)) {
      controller.pause()
      this.resumeOnDrain ??= () => controller.resume()
      this.res.once('drain', this.resumeOnDrain)
    }
  }

  onResponseEnd(): void {
    if (this.done) return
    this.done = true
    this.finish(undefined)
    this.res.end()
  }

  onResponseError(_controller: Controller, error: Error): void {
    clearTimeout(this.timer)
    // Settled, or the answer already ended by its Content-Length: nothing left to fail.
    if (this.settled || this.done) return
    if (!this.res.headersSent) {
      this.settle(error)
      return
    }
    // Mid-body: the client must not take what it got for the whole answer.
    this.done = true
    this.settled = true
    this.finish(error)
    this.res.destroy()
  }
}

function uncork(res: ServerResponse): void {
  res.uncork()
}
