// The one writer of error answers, for fastify's replies and for raw Node responses alike (an
// upgrade request detached from the HTTP server): the status from the reason table, the
// headers each status needs, and the JSON body `{ error, message, request_id }`. The reason is
// the same code the access log and the metrics show.
import { STATUS_CODES, type ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'
import { challenge, dpopChallenge, isFailure, type ErrorAnswer } from './denial.js'
import { grpcTrailers, isGrpcRequest } from './grpc_status.js'
import { sendHeadWithEnd } from './h2_response.js'

// A Retry-After for 503 whose cause does not say when: the causes (keys or the revocation list
// unavailable) are retried in the background, so a client may try again soon. A denial that
// knows (the fetch that will bring a token's key is due in n seconds) carries its own.
const RETRY_AFTER_S = 5

/**
 * Sent back on every answer, allowed or not, with the id the access log and the upstream got
 * (the client's own when it sent a usable one), so a client can quote it in a support request.
 */
export const REQUEST_ID_HEADER = 'x-request-id'

/** The response headers of an error answer, by lower-case name. */
export function errorHeaders(answer: ErrorAnswer): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = { 'cache-control': 'no-store', 'content-type': 'application/json' }
  if (isFailure(answer)) {
    // The rest of a slow client's request is not waited for.
    if (answer.reason === 'request_timeout') headers.connection = 'close'
    if (answer.status === 503) headers['retry-after'] = String(RETRY_AFTER_S)
    return headers
  }
  // RFC 6750 §3: the challenge says what was wrong with the token, if anything.
  const header = challenge(answer)
  const dpop = dpopChallenge(answer)
  if (dpop) {
    // RFC 9449 §7.2: both schemes' challenges where both are accepted.
    headers['www-authenticate'] = header && answer.dpop?.bearer ? [dpop, header] : dpop
    if (answer.nonce) headers['dpop-nonce'] = answer.nonce
  } else if (header) headers['www-authenticate'] = header
  if (answer.status === 503) headers['retry-after'] = String(answer.retryAfterS ?? RETRY_AFTER_S)
  if (answer.location) headers.location = answer.location
  // The client may be sending the body still: do not read it to keep the connection.
  if (answer.reason === 'body_too_large') headers.connection = 'close'
  return headers
}

export function errorBody(answer: ErrorAnswer, requestId: string): string {
  return JSON.stringify({ error: answer.reason, message: answer.description, request_id: requestId })
}

/**
 * Answers a request fastify is serving. The gateway's onSend hook sets x-request-id on every
 * answer; set here too for the answers fastify gives before its hooks (frameworkErrors).
 */
export function sendError(reply: FastifyReply, answer: ErrorAnswer, requestId: string): FastifyReply {
  if (isGrpcRequest(reply.request.headers)) return sendGrpcError(reply, answer, requestId)
  return reply.code(answer.status).headers(errorHeaders(answer)).header(REQUEST_ID_HEADER, requestId).send(errorBody(answer, requestId))
}

/**
 * A gRPC call's refusal or failure, as gRPC's Trailers-Only answer (PROTOCOL-HTTP2.md): HTTP 200,
 * `grpc-status` and `grpc-message` (the reason code) in the one header block, which on HTTP/2 also
 * ends the stream; no body. The headers of the HTTP answer (WWW-Authenticate, Retry-After) stay,
 * so a client reads the challenge from the call's metadata. The access line and the metrics keep
 * the HTTP status the reason has (answeredStatus).
 */
function sendGrpcError(reply: FastifyReply, answer: ErrorAnswer, requestId: string): FastifyReply {
  const headers = errorHeaders(answer)
  delete headers['content-type']
  const type = String(reply.request.headers['content-type']).split(';', 1)[0]!.trim()
  ;(reply.raw as Answered)[ANSWERED_STATUS] = answer.status
  sendHeadWithEnd(reply.raw)
  return reply.code(200).headers(headers).headers(grpcTrailers(answer)).header('content-type', type).header(REQUEST_ID_HEADER, requestId).send()
}

const ANSWERED_STATUS = Symbol('jwtgate.answeredStatus')
type Answered = { [ANSWERED_STATUS]?: number }

/** The status a finished answer counts as in the access line and the metrics: a gRPC refusal's HTTP status, not its 200. */
export function answeredStatus(res: object, statusCode: number): number {
  return (res as Answered)[ANSWERED_STATUS] ?? statusCode
}

/** Answers on a Node response that fastify does not own, then ends it. */
export function writeError(res: ServerResponse, answer: ErrorAnswer, requestId: string): void {
  res.writeHead(answer.status, { ...errorHeaders(answer), [REQUEST_ID_HEADER]: requestId })
  res.end(errorBody(answer, requestId))
}

/**
 * The whole answer as bytes, for a socket that no response owns (Node's `clientError`: a header
 * section or a request that took too long); the connection is closed after it.
 */
export function rawError(answer: ErrorAnswer, requestId: string): string {
  const body = errorBody(answer, requestId)
  const headers = { ...errorHeaders(answer), [REQUEST_ID_HEADER]: requestId, connection: 'close', 'content-length': String(Buffer.byteLength(body)) }
  let head = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ''}\r\n`
  for (const [name, value] of Object.entries(headers)) for (const one of typeof value === 'string' ? [value] : value) head += `${name}: ${one}\r\n`
  return `${head}\r\n${body}`
}
