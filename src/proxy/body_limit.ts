// `max_body_bytes`: a request body larger than the route allows gets 413. A declared
// Content-Length is checked before anything is forwarded; a body of unknown length (chunked) is
// counted as it streams to the upstream, and when it passes the limit the upstream request is
// aborted (undici destroys its connection), so the upstream never receives a cut-off body that
// it could take as complete.
import { Readable, Transform, pipeline } from 'node:stream'
import { deny, type Denial } from '../http/denial.js'

export class BodyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`the request body is larger than ${limit} bytes`)
    this.name = 'BodyTooLarge'
  }
}

export function bodyTooLarge(limit: number): Denial {
  return deny('body_too_large', `the request body is larger than ${limit} bytes`)
}

/** The denial when the declared Content-Length is already over the limit (0: no limit). */
export function declaredTooLarge(contentLength: string | undefined, limit: number): Denial | undefined {
  return limit > 0 && contentLength !== undefined && Number(contentLength) > limit ? bodyTooLarge(limit) : undefined
}

/**
 * The body to forward: a streamed body wrapped in a counter that fails the upstream request
 * (BodyTooLarge) when it passes the limit.
 */
export function limitBody(body: unknown, limit: number): unknown {
  if (!(body instanceof Readable)) return body
  let seen = 0
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length
      if (seen > limit) done(new BodyTooLarge(limit))
      else done(null, chunk)
    },
  })
  // pipeline, not pipe: a client that goes away must end the upstream request too.
  pipeline(body, counted, () => {})
  return counted
}

/** Whether a forwarding error (as reply-from reports it, the cause wrapped) is the body limit. */
export function isBodyTooLarge(error: Error): boolean {
  return error instanceof BodyTooLarge || error.cause instanceof BodyTooLarge
}
