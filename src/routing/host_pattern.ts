// Host matching. Hosts are compared in one canonical form: lower case (RFC 3986 §3.2.2: the
// host is case-insensitive), no port, no trailing dot, IPv6 literals in brackets as written in
// a Host header (`[::1]`, like WHATWG URL's hostname).
import type { DocPath, OnProblem } from '../policy/problems.js'

export interface HostPattern {
  readonly source: string
  /** `host` as returned by hostFromHeader. */
  matches(hostLowercaseNoPort: string): boolean
}

/**
 * The canonical host of a Host header, or '' when it is absent or not a valid host (which
 * matches no host pattern; src/decide.ts refuses a Host that is present and not valid). A trailing dot is dropped because `admin.example.com.` names the
 * same host: were it kept, a route limited to admin.example.com would be skipped and the request
 * could fall through to a less strict route while the upstream still serves admin.example.com.
 */
export function hostFromHeader(hostHeader: string | undefined): string {
  if (hostHeader === undefined || hostHeader === '') return ''
  let host: string
  let rest: string
  if (hostHeader.charCodeAt(0) === 0x5b) {
    // '[' IPv6 literal
    const close = hostHeader.indexOf(']')
    if (close < 0) return ''
    host = hostHeader.slice(0, close + 1)
    rest = hostHeader.slice(close + 1)
  } else {
    const colon = hostHeader.indexOf(':')
    host = colon < 0 ? hostHeader : hostHeader.slice(0, colon)
    rest = colon < 0 ? '' : hostHeader.slice(colon)
  }
  if (rest !== '' && !isPort(rest)) return ''
  host = host.toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  return isHost(host) ? host : ''
}

/** `:` followed by a port number up to 65535 in at most five digits (RFC 3986 §3.2.3 allows an empty port). */
function isPort(rest: string): boolean {
  if (rest.charCodeAt(0) !== 0x3a || rest.length > 6) return false
  let port = 0
  for (let i = 1; i < rest.length; i++) {
    const c = rest.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
    port = port * 10 + (c - 0x30)
  }
  return port <= 65535
}

/** A lower-case DNS name or IPv4 address, or a bracketed IPv6 address. */
function isHost(host: string): boolean {
  if (host.charCodeAt(0) === 0x5b) return isIPv6Literal(host)
  return isDnsName(host)
}

/** Dot-separated labels of 1 to 63 characters from [a-z0-9_-]. */
function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false
  let label = 0
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c === 0x2e) {
      if (label === 0) return false
      label = 0
      continue
    }
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f
    if (!ok || ++label > 63) return false
  }
  return label > 0
}

/** `[` hex digits, ':' and '.' `]`; zone identifiers and IPvFuture are not accepted. */
function isIPv6Literal(host: string): boolean {
  if (host.length < 4 || host.charCodeAt(host.length - 1) !== 0x5d) return false
  let colons = 0
  for (let i = 1; i < host.length - 1; i++) {
    const c = host.charCodeAt(i)
    if (c === 0x3a) colons++
    else if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || c === 0x2e)) return false
  }
  return colons >= 2
}

class ExactHost implements HostPattern {
  readonly source: string
  readonly host: string
  constructor(source: string, host: string) {
    this.source = source
    this.host = host
  }
  matches(host: string): boolean {
    return host === this.host
  }
}

class WildcardHost implements HostPattern {
  readonly source: string
  readonly suffix: string
  readonly dotSuffix: string
  constructor(source: string, suffix: string) {
    this.source = source
    this.suffix = suffix
    this.dotSuffix = '.' + suffix
  }
  // One or more labels before the suffix: `*.example.com` matches a.example.com and
  // a.b.example.com, never example.com itself.
  matches(host: string): boolean {
    return host.length > this.dotSuffix.length && host.endsWith(this.dotSuffix)
  }
}

/**
 * Compiles a host pattern: an exact host (`api.example.com`, `10.0.0.1`, `[::1]`), compared
 * case-insensitively, or `*.` followed by a DNS name. Anything else is a problem at `at`.
 */
export function compileHostPattern(source: string, at: DocPath, problem: OnProblem): HostPattern | undefined {
  const fail = (why: string): undefined => {
    problem(at, `invalid host pattern ${JSON.stringify(source)}: ${why}`)
    return undefined
  }
  let host = source.toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host.startsWith('*.')) {
    const suffix = host.slice(2)
    if (!isDnsName(suffix)) return fail('expected "*." followed by a host name')
    return new WildcardHost(source, suffix)
  }
  if (host.includes('*')) return fail('a wildcard must be the whole first label, as in "*.example.com"')
  if (host.includes(':') && host.charCodeAt(0) !== 0x5b) return fail('a host pattern has no port; write IPv6 addresses in brackets')
  if (!isHost(host)) return fail('not a valid host name or address')
  return new ExactHost(source, host)
}

/** True iff every host matched by `b` is also matched by `a`. */
export function hostCovers(a: HostPattern, b: HostPattern): boolean {
  if (a instanceof ExactHost) return b instanceof ExactHost && b.host === a.host
  if (a instanceof WildcardHost) {
    if (b instanceof ExactHost) return a.matches(b.host)
    if (b instanceof WildcardHost) return b.suffix === a.suffix || b.suffix.endsWith(a.dotSuffix)
  }
  return false // a pattern we did not compile: cannot tell, so do not claim it covers
}
