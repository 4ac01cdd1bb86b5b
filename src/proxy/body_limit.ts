// What the gateway asks of a request body while it streams to the upstream:
// - `max_body_bytes`: a body larger than the route allows gets 413. A declared Content-Length is
//   checked before anything is forwarded; a body of unknown length (chunked) is counted as it
//   streams, and when it passes the limit the upstream request is aborted (undici destroys its
//   connection), so the upstream never receives a cut-off body that it could take as complete.
// - `limits.min_body_rate`: a body must keep coming at that many bytes per second, averaged over
//   each `limits.body_rate_window`, or the upstream request is aborted the same way and the client
//   gets 408. An upload that stalls would otherwise hold an upstream connection as long as the
//   client likes (undici's own timeouts do not run while it writes a request body). Time spent
//   waiting for the upstream to read (backpressure, or a connection not yet free) is not held
//   against the client.
import { Readable, Transform } from 'node:stream'
import { deny, type Denial } from '../http/denial.js'

export class BodyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`the request body is larger than ${limit} bytes`)
    this.name = 'BodyTooLarge'
  }
}

export class BodyTooSlow extends Error {
  constructor(readonly minRate: number) {
    super(`the request body came slower than ${minRate} bytes per second`)
    this.name = 'BodyTooSlow'
  }
}

export function bodyTooLarge(limit: number): Denial {
  return deny('body_too_large', `the request body is larger than ${limit} bytes`)
}

/** The denial when the declared Content-Length is already over the limit (0: no limit). */
export function declaredTooLarge(contentLength: string | undefined, limit: number): Denial | undefined {
  return limit > 0 && contentLength !== undefined && Number(contentLength) > limit ? bodyTooLarge(limit) : undefined
}

/** How a streamed body is held to the limits; 0 turns one off. */
export interface BodyLimits {
  maxBytes: number
  /** Bytes per second, averaged over each window. */
  minRate: number
  windowMs: number
}

/** Where the bytes passed on are counted (the access line's request_bytes). */
export interface BodyCount {
  requestBytes?: number
}

/**
 * The body to forward: a streamed body wrapped in a counter that fails the upstream request
 * (BodyTooLarge, BodyTooSlow) when it passes a limit, and writes the bytes it passed on into
 * `count`; any other body as it is.
 */
export function limitBody(body: unknown, limits: BodyLimits, count: BodyCount): unknown {
  if (!(body instanceof Readable)) return body
  const { maxBytes } = limits
  let seen = 0
  count.requestBytes = 0
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length
      if (maxBytes > 0 && seen > maxBytes) done(new BodyTooLarge(maxBytes))
      else {
        count.requestBytes = seen
        done(null, chunk)
      }
    },
  })
  if (limits.minRate > 0) {
    const perWindow = (limits.minRate * limits.windowMs) / 1000
    let atWindowStart = 0
    const timer = setInterval(() => {
      // Data the upstream has not taken yet: the wait is the upstream's (or the pool's), not the client's.
      const upstreamWaits = counted.readableLength > 0 || counted.writableLength > 0
      if (!upstreamWaits && seen - atWindowStart < perWindow) counted.destroy(new BodyTooSlow(limits.minRate))
      atWindowStart = seen
    }, limits.windowMs)
    const stop = () => clearInterval(timer)
    counted.once('close', stop)
    counted.once('end', stop)
    body.once('end', stop)
  }
  // Not pipeline(): on a limit the client's request is left alone (not destroyed, which would
  // close its connection before it gets its 413 or 408; the answer closes it). A client that goes
  // away still ends the upstream request.
  body.once('error', (err) => counted.destroy(err))
  body.once('aborted', () => counted.destroy(new Error('the client closed the connection')))
  counted.once('error', () => body.unpipe(counted))
  body.pipe(counted)
  return counted
}

/**
 * The same limits for a body piped straight into its upstream stream (HTTP/2 upstreams,
 * ./h2_upstream.ts), without a Transform between the two: in a profile of unary gRPC calls the
 * Transform and its pipe were a third of the gateway's CPU a call. The body is counted on its
 * 'data' events (call before piping it, in the same tick); `fail` is called once, with
 * BodyTooLarge or BodyTooSlow, and the caller stops the upstream stream and answers. Returns
 * the function that stops watching. `upstreamWaits` says the upstream has not taken what it got
 * (its flow-control window is shut): the wait is then not the client's.
 */
export function watchBody(body: Readable, limits: BodyLimits, fail: (error: Error) => void, upstreamWaits: () => boolean): () => void {
  const { maxBytes, minRate } = limits
  if (maxBytes <= 0 && minRate <= 0) return () => {}
  let seen = 0
  let timer: NodeJS.Timeout | undefined
  const stop = () => {
    clearInterval(timer)
    body.off('data', count)
  }
  const failWith = (error: Error) => {
    stop()
    fail(error)
  }
  const count = (chunk: Buffer) => {
    seen += chunk.length
    if (maxBytes > 0 && seen > maxBytes) failWith(new BodyTooLarge(maxBytes))
  }
  body.on('data', count)
  if (minRate > 0) {
    const perWindow = (minRate * limits.windowMs) / 1000
    let atWindowStart = 0
    timer = setInterval(() => {
      if (!upstreamWaits() && seen - atWindowStart < perWindow) failWith(new BodyTooSlow(minRate))
      atWindowStart = seen
    }, limits.windowMs)
  }
  body.once('end', stop)
  body.once('close', stop)
  return stop
}

/** Whether a forwarding error (undici passes the body's own error on) is the body limit. */
export function isBodyTooLarge(error: Error): boolean {
  return error instanceof BodyTooLarge
}

/** Whether a forwarding error is min_body_rate's. */
export function isBodyTooSlow(error: Error): boolean {
  return error instanceof BodyTooSlow
}
