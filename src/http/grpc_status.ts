// gRPC's words for the gateway's answers (the gRPC over HTTP/2 protocol, PROTOCOL-HTTP2.md, and
// its status codes, statuscodes.md): a gRPC client reads a refusal or a failure from the
// `grpc-status` and `grpc-message` fields of an HTTP 200 answer, not from the HTTP status or a
// JSON body, which it cannot parse. The reason code is the one the JSON answer, the access log
// and the metrics use; the table below gives each its status.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { DenyReason, ErrorAnswer, FailureReason } from './denial.js'

/** gRPC status codes (statuscodes.md). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const

const { INVALID_ARGUMENT, DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED } = GrpcStatus

// Each reason's status: the HTTP status's meaning in gRPC's words. 401 is UNAUTHENTICATED, 403
// PERMISSION_DENIED, 503 UNAVAILABLE (the client may retry), 400 INVALID_ARGUMENT, 404 (no route:
// no such method here) UNIMPLEMENTED as gRPC's own HTTP mapping has it, 413 and 431
// RESOURCE_EXHAUSTED (gRPC's word for a message over a size limit), timeouts DEADLINE_EXCEEDED,
// an unreachable upstream UNAVAILABLE, the gateway's own fault INTERNAL.
const STATUS: Record<DenyReason | FailureReason, number> = {
  bad_path: INVALID_ARGUMENT,
  bad_host: INVALID_ARGUMENT,
  no_route: UNIMPLEMENTED,
  multiple_tokens: INVALID_ARGUMENT,
  missing_token: UNAUTHENTICATED,
  malformed: UNAUTHENTICATED,
  token_too_large: UNAUTHENTICATED,
  wrong_issuer: UNAUTHENTICATED,
  bad_algorithm: UNAUTHENTICATED,
  unknown_kid: UNAUTHENTICATED,
  keys_unavailable: UNAVAILABLE,
  bad_signature: UNAUTHENTICATED,
  expired: UNAUTHENTICATED,
  not_yet_valid: UNAUTHENTICATED,
  issued_in_future: UNAUTHENTICATED,
  wrong_audience: UNAUTHENTICATED,
  invalid_claims: UNAUTHENTICATED,
  insufficient_claims: PERMISSION_DENIED,
  revoked: UNAUTHENTICATED,
  replayed: UNAUTHENTICATED,
  revocation_unavailable: UNAVAILABLE,
  wrong_type: UNAUTHENTICATED,
  identity_too_large: PERMISSION_DENIED,
  cors_rejected: PERMISSION_DENIED,
  https_required: PERMISSION_DENIED,
  body_too_large: RESOURCE_EXHAUSTED,
  // Sender-constrained tokens (src/auth/binding.ts): a proof or binding that fails is 401's
  // UNAUTHENTICATED; the replay cache unable to record a proof is 503's UNAVAILABLE.
  invalid_dpop_proof: UNAUTHENTICATED,
  use_dpop_nonce: UNAUTHENTICATED,
  proof_replayed: UNAUTHENTICATED,
  proof_replay_unavailable: UNAVAILABLE,
  binding_mismatch: UNAUTHENTICATED,
  unbound_token: UNAUTHENTICATED,
  headers_too_large: RESOURCE_EXHAUSTED,
  upstream_unreachable: UNAVAILABLE,
  upstream_timeout: DEADLINE_EXCEEDED,
  deadline_exceeded: DEADLINE_EXCEEDED,
  bad_request: INVALID_ARGUMENT,
  internal_error: INTERNAL,
  request_timeout: DEADLINE_EXCEEDED,
  upstream_busy: UNAVAILABLE,
}

/** The gRPC status of an answer's reason. */
export function grpcStatusOf(answer: ErrorAnswer): number {
  return STATUS[answer.reason]
}

/** Whether a request is a gRPC call: content-type application/grpc, alone or with a +format or parameters (grpc-web included). */
export function isGrpcRequest(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type']
  if (typeof type !== 'string' || !type.startsWith('application/grpc')) return false
  const next = type.charCodeAt(16)
  // End, '+' (application/grpc+proto), ';' (parameters) or '-' (application/grpc-web).
  return Number.isNaN(next) || next === 43 || next === 59 || next === 45
}

/**
 * The fields of a gRPC answer for a refusal or a failure: `grpc-status`, and `grpc-message` with
 * the reason code (printable ASCII, so no percent-encoding is needed: PROTOCOL-HTTP2.md).
 */
export function grpcTrailers(answer: ErrorAnswer): OutgoingHttpHeaders {
  return { 'grpc-status': String(grpcStatusOf(answer)), 'grpc-message': answer.reason }
}

/**
 * A gRPC call's deadline from its `grpc-timeout` (PROTOCOL-HTTP2.md: at most 8 digits and a unit,
 * H M S m u n), in ms; undefined when absent or not in that form.
 */
export function grpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined
  const match = /^([0-9]{1,8})([HMSmun])$/.exec(value)
  if (!match) return undefined
  return Number(match[1]) * UNIT_MS[match[2]!]!
}

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 }

/** A deadline in ms as a `grpc-timeout` value: the finest of ms, S, M, H that fits in 8 digits, rounded up. */
export function grpcTimeoutValue(ms: number): string {
  for (const unit of ['m', 'S', 'M', 'H']) {
    const count = Math.ceil(ms / UNIT_MS[unit]!)
    if (count <= 99_999_999) return `${count}${unit}`
  }
  return '99999999H'
}
