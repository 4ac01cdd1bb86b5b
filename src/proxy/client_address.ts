// Who the client is, for the access log and the trace: the address of the connection, or, when
// that is a proxy in `trusted_proxies`, the address that proxy (and any trusted proxy before it)
// wrote in X-Forwarded-For. The trust rule of X-Forwarded-Proto (./https_only.ts): what a client
// writes itself is never believed, only what a trusted hop appended.
import type { IncomingMessage } from 'node:http'
import { type BlockList, isIP } from 'node:net'

/**
 * The client's address. X-Forwarded-For is read from the right (each proxy appends the address it
 * got the request from), skipping trusted proxies; the first address that is not one is the
 * client. A value that is not an IP address stops the walk at the last trusted hop: whatever is
 * left of it could be anything. All trusted: the leftmost.
 */
export function clientAddress(raw: IncomingMessage, trusted: BlockList | null): string | undefined {
  const peer = raw.socket.remoteAddress
  if (trusted === null || peer === undefined || !isTrusted(trusted, peer)) return peer
  const chain = raw.headers['x-forwarded-for']
  if (chain === undefined) return peer
  const hops = (Array.isArray(chain) ? chain.join(',') : chain).split(',')
  let client = peer
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = unbracketed(hops[i]!.trim())
    if (isIP(hop) === 0) return client
    client = hop
    if (!isTrusted(trusted, hop)) return hop
  }
  return client
}

function isTrusted(trusted: BlockList, address: string): boolean {
  return trusted.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')
}

/** `[2001:db8::1]` as some proxies write IPv6 addresses. */
function unbracketed(hop: string): string {
  return hop.startsWith('[') && hop.endsWith(']') ? hop.slice(1, -1) : hop
}
