// Identity headers: the client may never supply them, only the gateway, from verified claims.
import type { IncomingHttpHeaders } from 'node:http'
import { claimAt, type ClaimPath } from '../auth/claims.js'

export interface IdentityHeader {
  /** Lower-case header name. */
  name: string
  claim: ClaimPath
  /** How an array claim is written: joined with `join`, or as JSON. */
  encoding: { json: true } | { json: false; join: string }
}

/**
 * Removes every header the client must not set: those named in any identity mapping and those
 * under a reserved prefix, in any case and in the underscore spelling (`x_user_id`), which
 * CGI-style back ends (PHP, WSGI) read as the same header as `x-user-id`.
 */
export function headerStripper(names: Iterable<string>, prefixes: readonly string[]): (headers: IncomingHttpHeaders) => void {
  const reserved = new Set([...names].map(canonical))
  const reservedPrefixes = prefixes.map(canonical)
  const isReserved = (name: string) => {
    const c = canonical(name)
    if (reserved.has(c)) return true
    for (const p of reservedPrefixes) if (c.startsWith(p)) return true
    return false
  }
  // for…in, not Object.keys: no array per request. Deleting the key being visited is safe.
  return (headers) => {
    for (const name in headers) if (isReserved(name)) delete headers[name]
  }
}

function canonical(name: string): string {
  const lower = name.toLowerCase()
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower
}

/** Sets the identity headers from verified claims. A claim that is absent gives no header. */
export function injectIdentity(headers: IncomingHttpHeaders, claims: Record<string, unknown>, rules: readonly IdentityHeader[]): void {
  for (const rule of rules) {
    const value = encodeClaim(claimAt(claims, rule.claim), rule.encoding)
    if (value !== undefined) headers[rule.name] = value
  }
}

export function encodeClaim(value: unknown, encoding: IdentityHeader['encoding']): string | undefined {
  if (value === undefined || value === null) return undefined
  let text: string
  if (typeof value === 'string') text = value
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value)
  else if (Array.isArray(value) && !encoding.json) text = value.map((v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))).join(encoding.join)
  else text = JSON.stringify(value)
  return headerSafe(text)
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
