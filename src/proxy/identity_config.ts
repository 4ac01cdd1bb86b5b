// The policy's identity headers (`identity_headers`, `forward_payload_header`,
// `identity_header_max_bytes`, `strip_header_prefixes`) compiled: what each route writes from
// verified claims, and what is stripped from every client request. identity_headers.ts runs them.
import { isOwnedHeader, ownedHeaderUnderPrefix, PATH_AND_METHOD_OVERRIDES } from '../http/owned_headers.js'
import { parseClaimPath } from '../auth/claims.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import { IdentityHeaderObjectSchema, PolicySchema, type IdentityHeaderDocument, type PolicyDocument, type RouteDocument } from '../policy/schema.js'
import { headerStripper, type IdentityHeader, type IdentityOutput } from './identity_headers.js'

const DEFAULT = defaultsOf(PolicySchema, ['strip_header_prefixes', 'identity_header_max_bytes'])
const HEADER_DEFAULT = defaultsOf(IdentityHeaderObjectSchema, ['join', 'json'])

/** The policy-wide identity settings every route starts from. */
export interface IdentityDefaults {
  readonly headers: readonly IdentityHeader[]
  readonly payloadHeader: string | null
  readonly maxBytes: number
  /** `binding_header`, lower case; null for none. */
  readonly bindingHeader: string | null
  /** Removes from a client's headers every one the gateway may write, in either spelling. */
  readonly strip: (headers: Record<string, unknown>) => void
}

/**
 * The policy's own identity settings. A header or prefix that cannot be used is said and left
 * out, so that the routes can still be checked against the rest.
 */
export function compileIdentityDefaults(doc: PolicyDocument, problem: OnProblem): IdentityDefaults {
  const fail = problem
  const prefixes = doc.strip_header_prefixes ?? DEFAULT.strip_header_prefixes
  prefixes.forEach((prefix, i) => {
    const owned = ownedHeaderUnderPrefix(prefix)
    if (owned) fail(['strip_header_prefixes', i], `prefix "${prefix}" would strip ${owned}, which the gateway or the protocol needs`)
  })
  const headers = compileIdentityHeaders(doc.identity_headers ?? {}, ['identity_headers'], fail)
  const payload = doc.forward_payload_header === undefined ? null : payloadHeader(doc.forward_payload_header, headers, ['forward_payload_header'], fail)
  return {
    headers,
    payloadHeader: payload,
    maxBytes: doc.identity_header_max_bytes ?? DEFAULT.identity_header_max_bytes,
    bindingHeader: doc.binding_header === undefined ? null : bindingHeader(doc.binding_header, headers, payload, fail),
    strip: headerStripper(strippedHeaderNames(doc), prefixes) as IdentityDefaults['strip'],
  }
}

// gRPC reads a metadata name ending in -bin as base64 of binary data (PROTOCOL-HTTP2.md): a claim
// written there would reach a gRPC service decoded into other bytes. Identity headers are gRPC
// metadata as they are (lower-case ASCII names, text values), so such a name is refused.
function isGrpcBinaryName(name: string): boolean {
  return name.endsWith('-bin') || name.endsWith('_bin')
}
const GRPC_BINARY_PROBLEM = (name: string) =>
  `${name} ends in -bin, which gRPC reads as base64 binary metadata: a claim would reach a gRPC service as other bytes; choose another name`

function compileIdentityHeaders(spec: Readonly<Record<string, IdentityHeaderDocument>>, at: DocPath, problem: OnProblem): IdentityHeader[] {
  const out: IdentityHeader[] = []
  for (const [header, value] of Object.entries(spec)) {
    const name = header.toLowerCase()
    // x_forwarded_for is X-Forwarded-For to CGI-style back ends: both spellings are checked.
    if (isOwnedHeader(name)) {
      problem([...at, header], `${header} cannot carry a claim: the gateway or the protocol owns it`)
      continue
    }
    if (isGrpcBinaryName(name)) {
      problem([...at, header], GRPC_BINARY_PROBLEM(header))
      continue
    }
    const claim = parseClaimPath(typeof value === 'string' ? value : value.claim, [...at, header], problem)
    if (!claim) continue
    const spec: { json?: boolean; join?: string } = typeof value === 'object' ? value : {}
    // Elements escape the characters of join with %XX, so join itself must survive as it is.
    if (spec.join !== undefined && !/^[\x20-\x24\x26-\x7e]+$/.test(spec.join)) {
      problem([...at, header, 'join'], 'join must be visible ASCII or spaces, without %: the elements percent-encode its characters')
      continue
    }
    const encoding = (spec.json ?? HEADER_DEFAULT.json) ? { json: true as const } : { json: false as const, join: spec.join ?? HEADER_DEFAULT.join }
    out.push({ name, claim, encoding })
  }
  return out
}

/** `binding_header`'s name, checked like an identity header's; null after saying why. */
function bindingHeader(name: string, identity: readonly IdentityHeader[], payload: string | null, problem: OnProblem): string | null {
  const lower = name.toLowerCase()
  if (isOwnedHeader(lower)) {
    problem(['binding_header'], `${name} cannot be the binding header: the gateway or the protocol owns it`)
    return null
  }
  if (lower === payload || identity.some((h) => h.name.replaceAll('_', '-') === lower.replaceAll('_', '-'))) {
    problem(['binding_header'], `${name} is also an identity header; give the binding header a name of its own`)
    return null
  }
  return lower
}

/** `forward_payload_header`'s name, checked like an identity header's; null after saying why. */
function payloadHeader(name: string, identity: readonly IdentityHeader[], at: DocPath, problem: OnProblem): string | null {
  const lower = name.toLowerCase()
  if (isOwnedHeader(lower)) {
    problem(at, `${name} cannot carry the token payload: the gateway or the protocol owns it`)
    return null
  }
  if (isGrpcBinaryName(lower)) {
    problem(at, GRPC_BINARY_PROBLEM(name))
    return null
  }
  if (identity.some((h) => h.name.replaceAll('_', '-') === lower.replaceAll('_', '-'))) {
    problem(at, `${name} is also an identity header; give the payload a header of its own`)
    return null
  }
  return lower
}

/**
 * Every header the client may not send on: every header name the gateway may write as identity,
 * on any route (so that no route, whatever it sets itself, passes a client's copy through), and
 * the path/method overrides (stripped with the identity headers, so their underscore spellings go too).
 */
function strippedHeaderNames(doc: PolicyDocument): string[] {
  const names = [...Object.keys(doc.identity_headers ?? {}), ...PATH_AND_METHOD_OVERRIDES]
  if (doc.forward_payload_header) names.push(doc.forward_payload_header)
  // What the gateway says about the binding, and what only a trusted proxy may say about the client's certificate.
  if (doc.binding_header) names.push(doc.binding_header)
  if (doc.client_certificate_header) names.push(doc.client_certificate_header.name)
  for (const route of doc.routes) {
    names.push(...Object.keys(route.identity_headers ?? {}))
    if (route.forward_payload_header) names.push(route.forward_payload_header)
  }
  return names
}

/** The policy's identity headers with the route's own added or overriding, and its payload header. */
export function compileRouteIdentity(spec: RouteDocument, at: DocPath, defaults: IdentityDefaults, problem: OnProblem): IdentityOutput | undefined {
  let ok = true
  let headers = defaults.headers
  if (spec.identity_headers) {
    const own = compileIdentityHeaders(spec.identity_headers, [...at, 'identity_headers'], problem)
    if (own.length !== Object.keys(spec.identity_headers).length) ok = false
    const byName = new Map(defaults.headers.map((h) => [h.name, h]))
    for (const h of own) byName.set(h.name, h)
    headers = [...byName.values()]
  }
  let payload = defaults.payloadHeader
  if (spec.forward_payload_header !== undefined) {
    payload = spec.forward_payload_header === false ? null : payloadHeader(spec.forward_payload_header, headers, [...at, 'forward_payload_header'], problem)
    if (spec.forward_payload_header !== false && payload === null) ok = false
  } else if (payload && headers.some((h) => h.name.replaceAll('_', '-') === payload!.replaceAll('_', '-'))) {
    problem([...at, 'identity_headers'], `${payload} is the policy's forward_payload_header; give the identity header another name`)
    ok = false
  }
  if (defaults.bindingHeader && (payload === defaults.bindingHeader || headers.some((h) => h.name === defaults.bindingHeader))) {
    problem([...at, 'identity_headers'], `${defaults.bindingHeader} is the policy's binding_header; give the identity header another name`)
    ok = false
  }
  return ok ? { headers, payloadHeader: payload, maxBytes: defaults.maxBytes, bindingHeader: defaults.bindingHeader } : undefined
}
