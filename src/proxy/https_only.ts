// Which scheme a request arrived with, and `require_https`. A request is HTTPS when it reached
// this listener over TLS, or when a trusted proxy (an address in `trusted_proxies`) says so in
// X-Forwarded-Proto. Anyone else's X-Forwarded-Proto is ignored: a client could write it.
import type { IncomingMessage } from 'node:http'
import { BlockList, isIP } from 'node:net'
import { deny, type Denial } from '../http/denial.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import { PolicySchema } from '../policy/schema.js'
import { hostFromHeader } from '../routing/route_table.js'

export interface HttpsRule {
  /** `require_https`: plain-HTTP requests are redirected (GET, HEAD) or refused. */
  required: boolean
  /** `trusted_proxies`; null when none. */
  trustedProxies: BlockList | null
}

const DEFAULT = defaultsOf(PolicySchema, ['require_https'])

/** `require_https` and `trusted_proxies`; undefined after saying which CIDR cannot be read. */
export function compileHttpsRule(required: boolean | undefined, cidrs: readonly string[] | undefined, problem: OnProblem): HttpsRule | undefined {
  let trustedProxies: BlockList | null = null
  let ok = true
  cidrs?.forEach((cidr, i) => {
    const parsed = parseCidr(cidr, ['trusted_proxies', i], problem)
    if (!parsed) {
      ok = false
      return
    }
    trustedProxies ??= new BlockList()
    trustedProxies.addSubnet(parsed.address, parsed.prefix, parsed.family)
  })
  return ok ? { required: required ?? DEFAULT.require_https, trustedProxies } : undefined
}

function parseCidr(text: string, at: DocPath, problem: OnProblem): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = text.indexOf('/')
  const address = slash < 0 ? text : text.slice(0, slash)
  const fail = (message: string): undefined => {
    problem(at, message)
    return undefined
  }
  const version = isIP(address)
  if (version === 0) return fail(`${JSON.stringify(text)} is not an IP address or CIDR such as 10.0.0.0/8`)
  const bits = version === 4 ? 32 : 128
  const prefixText = slash < 0 ? String(bits) : text.slice(slash + 1)
  const prefix = Number(prefixText)
  if (!/^[0-9]{1,3}$/.test(prefixText) || prefix > bits) return fail(`${JSON.stringify(text)} has a prefix length that is not 0 to ${bits}`)
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** `https` or `http`: how the request reached us, or reached the trusted proxy in front of us. */
export function requestScheme(raw: IncomingMessage, rule: HttpsRule): 'https' | 'http' {
  if ('encrypted' in raw.socket) return 'https'
  if (!fromTrustedProxy(raw, rule)) return 'http'
  // The proxy nearest the client wrote the first value; anything but https counts as http.
  return firstValue(raw.headers['x-forwarded-proto']).toLowerCase() === 'https' ? 'https' : 'http'
}

/** Whether the peer of this connection is one of `trusted_proxies`, whose X-Forwarded-* (and client certificate header) count. */
export function fromTrustedProxy(raw: IncomingMessage, rule: HttpsRule): boolean {
  const peer = raw.socket.remoteAddress
  return rule.trustedProxies !== null && peer !== undefined && rule.trustedProxies.check(peer, isIP(peer) === 6 ? 'ipv6' : 'ipv4')
}

function firstValue(header: string | string[] | undefined): string {
  return typeof header === 'string' ? header.split(',', 1)[0]!.trim() : ''
}

/**
 * `scheme://authority` of the request as its client addressed it, for a DPoP proof's htu: the
 * scheme as requestScheme says, the host a trusted proxy names in X-Forwarded-Host, else Host.
 */
export function requestOrigin(raw: IncomingMessage, rule: HttpsRule): string {
  const forwardedHost = !('encrypted' in raw.socket) && fromTrustedProxy(raw, rule) ? firstValue(raw.headers['x-forwarded-host']) : ''
  return `${requestScheme(raw, rule)}://${forwardedHost || raw.headers.host || ''}`
}

/**
 * With `require_https`, what a plain-HTTP request gets: GET and HEAD a 308 to the same host and
 * target on https (port 443), other methods (whose body the client has already sent in clear)
 * and requests without a valid Host a 403. Undefined when the request may go on.
 */
export function insecureRequest(raw: IncomingMessage, rule: HttpsRule): Denial | undefined {
  if (!rule.required || requestScheme(raw, rule) === 'https') return undefined
  const host = hostFromHeader(raw.headers.host)
  const target = raw.url ?? ''
  if ((raw.method === 'GET' || raw.method === 'HEAD') && host !== '' && REDIRECTABLE_TARGET.test(target)) {
    return { ...deny('https_required', 'this gateway is served over https only'), status: 308, location: `https://${host}${target}` }
  }
  return deny('https_required', 'this gateway is served over https only; send the request over https')
}

// An origin-form target of visible ASCII: safe to write into a Location header as it is.
const REDIRECTABLE_TARGET = /^\/[\x21-\x7e]*$/
