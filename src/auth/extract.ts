// Finds the token of a request in the route's token sources: headers (RFC 6750 §2.1
// `Authorization: Bearer <token>` by default), cookies, query parameters (§2.3). One pass over
// the raw headers, comparing names in place; strings are cut only for the token itself.
import { deny, type Denial } from '../http/denial.js'
import type { TokenSource, TokenSources } from './token_sources.js'

export interface FoundToken {
  token: string
  source: TokenSource
  /** `dpop` for `Authorization: DPoP <token>` (RFC 9449 §7.1), on a route that reads it. */
  scheme: 'bearer' | 'dpop'
  /** On a route that reads DPoP proofs: the first DPoP header, and how many there were. */
  proof: string | undefined
  proofs: number
}

/**
 * RFC 6750 §2: a client uses one method per request. A request with tokens in two places (or
 * twice in one: two Authorization headers, two session cookies) is ambiguous and refused rather
 * than guessing which one a back end would read. Node keeps only the first of several
 * Authorization headers in `req.headers`, which is why the raw list is scanned.
 */
export function extractToken(raw: readonly string[], url: string | undefined, sources: TokenSources, maxBytes: number): FoundToken | Denial {
  const { headers, cookies } = sources
  let token: string | undefined
  let from: TokenSource | undefined
  // Which header sources were seen, as bits: a header read for a token may appear once.
  let seen = 0
  // A header source present without its prefix (`Authorization: Basic …`), for the message.
  let unprefixed: TokenSource | undefined
  let scheme: FoundToken['scheme'] = 'bearer'
  let proof: string | undefined
  let proofs = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (sources.dpop && name.length === 4 && name.toLowerCase() === 'dpop') {
      proofs++
      proof ??= raw[i + 1]
    }
    for (let h = 0; h < headers.length; h++) {
      const source = headers[h]!
      if (name.length !== source.name.length || name.toLowerCase() !== source.name) continue
      if (seen & (1 << h)) return deny('multiple_tokens', `more than one ${source.what}`)
      seen |= 1 << h
      const value = raw[i + 1]
      // Node's rawHeaders always come in pairs; a list built otherwise must not break this.
      if (value === undefined) break
      if (!startsWithIgnoringCase(value, source.prefix)) {
        if (source.dpop && startsWithIgnoringCase(value, DPOP_PREFIX)) {
          if (from) return twoPlaces(from, source)
          token = value.slice(DPOP_PREFIX.length).trim()
          from = source
          scheme = 'dpop'
          continue
        }
        unprefixed = source
        continue
      }
      if (from) return twoPlaces(from, source)
      token = value.slice(source.prefix.length).trim()
      from = source
    }
    if (cookies.length !== 0 && name.length === 6 && name.toLowerCase() === 'cookie') {
      const header = raw[i + 1] ?? ''
      for (const source of cookies) {
        for (let at = findCookie(header, source.name, 0); at >= 0; at = findCookie(header, source.name, afterPair(header, at, ';'))) {
          const value = cookieValue(header, at)
          // An empty cookie (what a logout often leaves behind) is no token.
          if (value.length === 0) continue
          if (from) return twoPlaces(from, source)
          token = value
          from = source
        }
      }
    }
  }
  if (sources.queries.length !== 0 && url !== undefined) {
    const q = url.indexOf('?')
    if (q >= 0) {
      for (const source of sources.queries) {
        for (let at = findParameter(url, source.name, q + 1); at >= 0; at = findParameter(url, source.name, afterPair(url, at, '&'))) {
          const value = parameterValue(url, at)
          if (value.length === 0) continue
          if (from) return twoPlaces(from, source)
          token = value
          from = source
        }
      }
    }
  }
  // A header the route reads tokens from, present without its prefix (`Bearer<TAB>x`, `Bearer`,
  // `JWT x`, `Basic x` where `Bearer ` is read) is a malformed credential, not "no token": on an
  // optional route it would otherwise be served anonymously, and a token the gateway never
  // checked would sit beside the one it did. 401 invalid_token, whatever else the request carries.
  // (The scheme itself is compared ignoring case, RFC 7235 §2.1.)
  if (unprefixed) return deny('malformed', unprefixed.unprefixed)
  if (token === undefined || from === undefined) return deny('missing_token', 'a bearer token is required')
  if (token.length === 0) return deny('malformed', 'the bearer token is empty')
  if (token.length > maxBytes) return deny('token_too_large', `the token is larger than ${maxBytes} bytes`)
  return { token, source: from, scheme, proof, proofs }
}

const DPOP_PREFIX = 'dpop '

function twoPlaces(first: TokenSource, second: TokenSource): Denial {
  if (first === second) return deny('multiple_tokens', `more than one ${first.what}`)
  return deny('multiple_tokens', `tokens in more than one place: the ${first.what} and the ${second.what}`)
}

/** `prefix` is lower case; compared without cutting strings (ASCII letters fold, as RFC 7235 schemes do). */
function startsWithIgnoringCase(value: string, prefix: string): boolean {
  if (value.length < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) {
    let c = value.charCodeAt(i)
    if (c >= 0x41 && c <= 0x5a) c += 0x20
    if (c !== prefix.charCodeAt(i)) return false
  }
  return true
}

/** Where the pair after the one holding `at` starts (a value may itself contain `=`). */
export function afterPair(text: string, at: number, separator: string): number {
  const end = text.indexOf(separator, at)
  return end < 0 ? text.length : end + 1
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09
}

/**
 * Where the value of the next cookie called `name` starts in a Cookie header (RFC 6265 §4.2.1:
 * `name=value` pairs separated by `;` and optional whitespace), searching from `from`; -1 when
 * there is none. Names are compared exactly: cookie names are case-sensitive.
 */
export function findCookie(header: string, name: string, from: number): number {
  let i = from
  while (i < header.length) {
    while (i < header.length && isSpace(header.charCodeAt(i))) i++
    let end = header.indexOf(';', i)
    if (end < 0) end = header.length
    const eq = header.indexOf('=', i)
    if (eq >= 0 && eq < end) {
      let nameEnd = eq
      while (nameEnd > i && isSpace(header.charCodeAt(nameEnd - 1))) nameEnd--
      if (nameEnd - i === name.length && header.startsWith(name, i)) return eq + 1
    }
    i = end + 1
  }
  return -1
}

/** The cookie value starting at `at`, without surrounding whitespace and without the optional double quotes of RFC 6265. */
export function cookieValue(header: string, at: number): string {
  let end = header.indexOf(';', at)
  if (end < 0) end = header.length
  let start = at
  while (start < end && isSpace(header.charCodeAt(start))) start++
  while (end > start && isSpace(header.charCodeAt(end - 1))) end--
  if (end - start >= 2 && header.charCodeAt(start) === 0x22 && header.charCodeAt(end - 1) === 0x22) {
    start++
    end--
  }
  return header.slice(start, end)
}

/**
 * Where the value of the next query parameter called `name` starts in `url`, searching from
 * `from` (just after the `?`, or the start of a pair); -1 when there is none. A name written with
 * percent-escapes or `+` (`access%5Ftoken`) is decoded before comparing, as the upstream's
 * parser would: the same parameter must not hide from the gateway and reach the upstream.
 */
export function findParameter(url: string, name: string, from: number): number {
  let i = from
  while (i < url.length) {
    let end = url.indexOf('&', i)
    if (end < 0) end = url.length
    let nameEnd = url.indexOf('=', i)
    if (nameEnd < 0 || nameEnd > end) nameEnd = end
    if (parameterNameIs(url, i, nameEnd, name)) return nameEnd === end ? end : nameEnd + 1
    i = end + 1
  }
  return -1
}

export function parameterNameIs(url: string, start: number, end: number, name: string): boolean {
  if (end - start === name.length && url.startsWith(name, start)) return true
  const raw = url.slice(start, end)
  if (!raw.includes('%') && !raw.includes('+')) return false
  return decodeComponent(raw) === name
}

/** The decoded value starting at `at` (empty for a parameter without `=`). */
export function parameterValue(url: string, at: number): string {
  let end = url.indexOf('&', at)
  if (end < 0) end = url.length
  const raw = url.slice(at, end)
  return raw.includes('%') || raw.includes('+') ? decodeComponent(raw) : raw
}

/** application/x-www-form-urlencoded decoding; text that does not decode is kept as it is. */
function decodeComponent(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '))
  } catch {
    return text
  }
}
