// Identity headers: the client may never supply them, only the gateway, from verified claims.
import type { IncomingHttpHeaders } from 'node:http'
import { canonicalHeaderName } from '../http/owned_headers.js'
import { claimAt, type ClaimPath } from '../auth/claims.js'
import { deny, type Denial } from '../http/denial.js'

export interface IdentityHeader {
  /** Lower-case header name. */
  name: string
  claim: ClaimPath
  /** How an array claim is written: joined with `join`, or as JSON. */
  encoding: { json: true } | { json: false; join: string }
}

/** What a route tells its upstream about the caller. */
export interface IdentityOutput {
  /** The policy's identity_headers with the route's own added or overriding, by lower-case name. */
  headers: readonly IdentityHeader[]
  /** `forward_payload_header`: lower-case name of the header carrying the verified claims; null for none. */
  payloadHeader: string | null
  /** `identity_header_max_bytes`: a longer value refuses the request rather than being cut. */
  maxBytes: number
  /** `binding_header`: lower-case name of the header saying how the token was sender-constrained; null for none. */
  bindingHeader?: string | null
}

/**
 * Removes every header the client must not set: those named in any identity mapping and those
 * under a reserved prefix, in any case and in the underscore spelling (`x_user_id`), which
 * CGI-style back ends (PHP, WSGI) read as the same header as `x-user-id`.
 */
export function headerStripper(names: Iterable<string>, prefixes: readonly string[]): (headers: IncomingHttpHeaders) => void {
  const reserved = new Set([...names].map(canonicalHeaderName))
  const reservedPrefixes = prefixes.map(canonicalHeaderName)
  const isReserved = (name: string) => {
    const c = canonicalHeaderName(name)
    if (reserved.has(c)) return true
    for (const p of reservedPrefixes) if (c.startsWith(p)) return true
    return false
  }
  // for…in, not Object.keys: no array per request. Deleting the key being visited is safe.
  return (headers) => {
    for (const name in headers) if (isReserved(name)) delete headers[name]
  }
}

/**
 * The identity headers for verified claims (a claim that is absent gives no header), or a
 * denial when a value is longer than the route allows. A value is never cut short: a truncated
 * list of roles or groups would tell the upstream something the token does not say, and
 * leaving the header out would say the token has no such claim.
 */
/** `bound`: how the token was sender-constrained (src/auth/binding.ts), for the binding header; `none` when absent. */
export function identityHeaders(claims: Record<string, unknown>, output: IdentityOutput, bound?: string): Record<string, string> | Denial {
  const out: Record<string, string> = {}
  if (output.bindingHeader) out[output.bindingHeader] = bound ?? 'none'
  for (const rule of output.headers) {
    const value = encodeClaim(claimAt(claims, rule.claim), rule.encoding)
    if (value === undefined) continue
    if (value.length > output.maxBytes) return tooLarge(rule.name, value.length, output.maxBytes)
    out[rule.name] = value
  }
  if (output.payloadHeader) {
    // Re-encoded from the claims as parsed, not the token's own segment: with duplicate JSON
    // members the upstream reads exactly the claims the gateway checked (the last of each).
    const value = Buffer.from(JSON.stringify(claims)).toString('base64url')
    if (value.length > output.maxBytes) return tooLarge(output.payloadHeader, value.length, output.maxBytes)
    out[output.payloadHeader] = value
  }
  return out
}

// Header values are ASCII once encoded, so their length is their size in bytes.
function tooLarge(name: string, bytes: number, max: number): Denial {
  return deny('identity_too_large', `the identity header ${name} would be ${bytes} bytes, more than the ${max} this route sends`)
}

export function encodeClaim(value: unknown, encoding: IdentityHeader['encoding']): string | undefined {
  if (value === undefined || value === null) return undefined
  let text: string
  if (typeof value === 'string') text = value
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value)
  else if (Array.isArray(value) && !encoding.json) return joined(value, encoding.join)
  else text = JSON.stringify(value)
  return headerSafe(text)
}

/**
 * An array's elements joined with `join`, each made header-safe with the characters of `join`
 * percent-encoded too: `["eng,admin"]` is `eng%2Cadmin`, never `eng,admin`, which an upstream
 * splitting on `,` would read as two groups, byte for byte what a real admin's token gives.
 * Split on `join`, then percent-decode each element, and the array comes back as it was.
 * (`join` is visible ASCII without `%`: src/proxy/identity_config.ts refuses any other.)
 */
function joined(values: readonly unknown[], join: string): string {
  let out = ''
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    const text = typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)
    out += i === 0 ? elementSafe(text, join) : join + elementSafe(text, join)
  }
  return out
}

function elementSafe(text: string, join: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x25 || join.includes(text[i]!)) return escapeElement(text, join)
  }
  return text
}

function escapeElement(text: string, join: string): string {
  let out = ''
  // By code point, as headerSafe's /u expression does: a character outside the BMP is one escape.
  for (const ch of text) {
    const c = ch.codePointAt(0)!
    out += c < 0x20 || c > 0x7e || c === 0x25 || join.includes(ch) ? percentEncode(ch) : ch
  }
  return out
}

/**
 * Header values are visible ASCII. Anything else (CR and LF above all, which would let a claim
 * split the request; also non-ASCII, which Node refuses to send) is percent-encoded as UTF-8,
 * and so is every '%', so an upstream can always decode a value and get the claim back.
 */
export function headerSafe(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x25) return text.replace(/[^\x20-\x24\x26-\x7e]/gu, percentEncode)
  }
  return text
}

function percentEncode(ch: string): string {
  let out = ''
  for (const byte of Buffer.from(ch, 'utf8')) out += '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  return out
}
