// Finds the bearer token of a request (RFC 6750 §2.1: `Authorization: Bearer <token>`).
import { deny, type Denial } from './deny.js'

/**
 * Node keeps only the first of several Authorization headers in `req.headers`, so the raw list
 * is what tells whether a client sent more than one; two tokens make the request ambiguous and
 * it is refused rather than guessing which one a back end would read.
 */
export function extractBearerToken(raw: readonly string[], maxBytes: number): string | Denial {
  let value: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === 13 && name.toLowerCase() === 'authorization') {
      if (value !== undefined) return deny('multiple_tokens', 'more than one Authorization header')
      value = raw[i + 1]!
    }
  }
  if (value === undefined) return deny('missing_token', 'a bearer token is required')
  // The scheme is case-insensitive (RFC 7235 §2.1); anything but Bearer counts as no token.
  if (value.length < 7 || value.slice(0, 7).toLowerCase() !== 'bearer ') {
    return deny('missing_token', 'the Authorization header does not carry a Bearer token')
  }
  const token = value.slice(7).trim()
  if (token.length === 0) return deny('malformed', 'the bearer token is empty')
  if (token.length > maxBytes) return deny('token_too_large', `the token is larger than ${maxBytes} bytes`)
  return token
}
