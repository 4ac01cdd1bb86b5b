// Forwarding to an HTTP/2 upstream (src/proxy/h2_upstream.ts), and what a gRPC call needs on
// top of a plain HTTP/2 request:
// - `te: trailers` reaches the upstream (gRPC servers refuse a call without it, to detect proxies
//   that would drop trailers; RFC 9110 §7.6.1 makes TE hop-by-hop, and trailers is the one value
//   RFC 9113 §8.2.2 lets through);
// - the call's deadline (`grpc-timeout`) bounds the wait instead of the upstream's `timeout`, so
//   a call is never cut before its own deadline by a shorter upstream timeout; when the deadline
//   passes the gateway ends the call itself (DEADLINE_EXCEEDED, `deadline_exceeded`) and cancels
//   the upstream stream. A deadline longer than the route's `max_grpc_timeout` is cut to it, and
//   the upstream is sent the cut one (Envoy's max_grpc_timeout): the client's word is not an
//   unbounded hold on an upstream stream;
// - the token is watched for as long as the call lasts, as a WebSocket tunnel's is: at its
//   expiry (exp plus the issuer's skew) or its revocation the call is ended with
//   UNAUTHENTICATED (`expired`, `revoked`) and the upstream stream cancelled.
// Request trailers are passed on when the client announced them (a Trailer field).
import type { IncomingMessage, ServerResponse } from 'node:http'
import { deny, fail, type ErrorAnswer } from '../http/denial.js'
import { grpcTimeoutMs, grpcTimeoutValue, isGrpcRequest } from '../http/grpc_status.js'
import { H2Exchange, type ExchangeOwner, type H2Request, type H2Upstream } from '../proxy/h2_upstream.js'
import type { CompiledPolicy } from '../policy/compile.js'
import type { RequestState } from './request_state.js'
import { watchToken } from './token_watch.js'

/** The gateway ending an exchange itself (a call's deadline, its token's expiry): the answer it gives. */
export class Refusal extends Error {
  constructor(readonly answer: ErrorAnswer) {
    super(answer.description)
    this.name = 'Refusal'
  }
}

export function forwardOverHttp2(
  upstream: H2Upstream,
  answer: ExchangeOwner,
  raw: IncomingMessage,
  res: ServerResponse,
  state: RequestState,
  policy: () => CompiledPolicy,
  req: H2Request,
): void {
  const te = raw.headers.te
  if (typeof te === 'string' && /(^|,)\s*trailers\s*(;|,|$)/i.test(te)) req.headers.te = 'trailers'
  if (raw.headers.trailer !== undefined) req.trailers = () => raw.trailers
  const exchange = new H2Exchange(res, answer)
  if (isGrpcRequest(raw.headers)) {
    const deadlineMs = callDeadline(grpcTimeoutMs(raw.headers['grpc-timeout']), state.route!.maxGrpcTimeoutMs, req)
    if (deadlineMs !== undefined) {
      req.timeoutMs = 0
      // Past what a timer can hold (24.8 days) a deadline never comes in practice: Node would fire at once instead.
      if (deadlineMs <= MAX_TIMER_MS) {
        const timer = setTimeout(() => exchange.cut(new Refusal(fail('deadline_exceeded'))), Math.max(1, deadlineMs))
        res.once('close', () => clearTimeout(timer))
      }
    }
    // A call without a token (auth: none) has nothing to watch, and no listener to add for it.
    if (state.identity) {
      const stop = watchToken(state, policy, (reason) =>
        exchange.cut(new Refusal(deny(reason, reason === 'expired' ? 'the token expired during the call' : 'the token was revoked during the call'))),
      )
      res.once('close', stop)
    }
  }
  exchange.send(upstream, req)
}

const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * The deadline the gateway holds a call to: the client's, cut to `maxMs` (0: no cap), with the
 * request's grpc-timeout rewritten when cut. A call without one keeps the upstream's `timeout`
 * (undefined), as Envoy's max_grpc_timeout applies only to calls that carry a deadline.
 */
function callDeadline(clientMs: number | undefined, maxMs: number, req: H2Request): number | undefined {
  if (clientMs === undefined || maxMs === 0 || clientMs <= maxMs) return clientMs
  req.headers['grpc-timeout'] = grpcTimeoutValue(maxMs)
  return maxMs
}
