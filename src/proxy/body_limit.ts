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

/**
 * Checks the declared length, and wraps a streamed body in a counter. Returns the body to
 * forward, or the denial when the declared length is already too large.
 */
export function limitBody(body: unknown, contentLength: string | undefined, limit: number): Denial | { body: unknown } {
  if (contentLength !== undefined && Number(contentLength) > limit) return bodyTooLarge(limit)
  if (!(body instanceof Readable)) return { body }
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
  return { body: counted }
}

/** Whether a forwarding error (as reply-from reports it, the cause wrapped) is the body limit. */
export function isBodyTooLarge(error: Error): boolean {
  return error instanceof BodyTooLarge || error.cause instanceof BodyTooLarge
}
