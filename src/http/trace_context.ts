// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate`
// headers a client may send. The gateway owns both (src/http/owned_headers.ts): the client's
// copies are never passed on as they came. A valid context is continued: with tracing on
// (src/tracing/), the upstream gets the context of the gateway's own span; with tracing off, the
// same trace id, parent id and flags, rewritten from the parsed values. An invalid one is dropped.
// Parsed here, without the OpenTelemetry packages, because with tracing off none is loaded.

/** A valid incoming trace context. */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string
  /** The caller's span: 16 lower-case hex digits, not all zero. */
  readonly parentId: string
  /** Two hex digits; bit 0 is `sampled`. */
  readonly flags: string
  /** The header to pass on, rewritten from the values above (version 00). */
  readonly traceparent: string
  /** The vendor entries, checked and bounded (§3.3); undefined when none came or none was valid. */
  readonly tracestate: string | undefined
}

// §3.2.2: version, trace-id, parent-id, trace-flags. Version ff is invalid, so are all-zero ids;
// a later version may append fields after a dash (read as version 00, the tail dropped), version
// 00 may not. The rule @opentelemetry/core's parseTraceParent applies, leading and trailing
// spaces included.
const TRACEPARENT = /^[ \t]?((?!ff)[0-9a-f]{2})-((?!0{32})[0-9a-f]{32})-((?!0{16})[0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]?$/

/** The context a request carries, or undefined when it has none or an invalid one. */
export function incomingTraceContext(traceparent: string | string[] | undefined, tracestate: string | string[] | undefined): TraceContext | undefined {
  // Two traceparent headers (Node joins them with ", ") fail the pattern: §3.2, invalid.
  if (typeof traceparent !== 'string') return undefined
  const m = TRACEPARENT.exec(traceparent)
  if (!m || (m[1] === '00' && m[5] !== undefined)) return undefined
  const [, , traceId, parentId, flags] = m as unknown as [string, string, string, string, string]
  return {
    traceId,
    parentId,
    flags,
    traceparent: traceparentOf(traceId, parentId, flags),
    tracestate: tracestate === undefined ? undefined : checkedTraceState(tracestate),
  }
}

/** The `traceparent` value for a context (version 00). */
export function traceparentOf(traceId: string, spanId: string, flags: string): string {
  return `00-${traceId}-${spanId}-${flags}`
}

// §3.3.1: a key is `simple-key` or `tenant@system`; a value is 1-256 printable ASCII characters
// without `,` or `=`, not ending in a space.
const MEMBER =
  /^(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/
// §3.3.1.1: at most 32 members; vendors should propagate at least 512 characters, and may cut
// entries beyond that (as @opentelemetry/core's TraceState does).
const MAX_MEMBERS = 32
const MAX_LENGTH = 512

/**
 * The members of `tracestate` that are well formed, in order, up to 32 and 512 characters;
 * undefined when any member is malformed (§3.3.1: then the header is not used at all) or none is left.
 * Several tracestate headers are one list (§3.3.1.1: Node joins them with ", ").
 */
export function checkedTraceState(header: string | string[]): string | undefined {
  const text = Array.isArray(header) ? header.join(',') : header
  if (text.length > 8 * MAX_LENGTH) return undefined
  const kept: string[] = []
  let length = 0
  const seen = new Set<string>()
  for (const raw of text.split(',')) {
    const member = raw.trim()
    // Empty members are allowed, and skipped.
    if (member === '') continue
    if (!MEMBER.test(member)) return undefined
    const key = member.slice(0, member.indexOf('='))
    // A key appears once (§3.3.1.2); a repeated one makes the list invalid.
    if (seen.has(key)) return undefined
    seen.add(key)
    const added = member.length + (kept.length > 0 ? 1 : 0)
    if (kept.length >= MAX_MEMBERS || length + added > MAX_LENGTH) continue
    kept.push(member)
    length += added
  }
  return kept.length > 0 ? kept.join(',') : undefined
}
