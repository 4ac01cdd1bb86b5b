// What an HTTP/2 request brings that an HTTP/1.1 one does not, made to read as HTTP/1.1 before
// the one admission (./admit.ts) decides on it.
// - The size of its header list. The listener advertises limits.max_header_bytes as
//   SETTINGS_MAX_HEADER_LIST_SIZE (./listeners.ts), but nghttp2 holds a client to its settings only
//   once the client has acknowledged them: one that sends its HEADERS first (or never acknowledges)
//   had a 400 KB HPACK bomb decoded and handed on. So the list is measured here, as RFC 9113 §6.5.2
//   counts it (name, value and 32 octets a field), and a longer one gets 431, as HTTP/1.1's does.
// - Its host. RFC 9113 §8.3.1: `:authority` is the
// host a client with an HTTP/2 connection names; a `Host` field may come instead of it, or beside
// it from an intermediary. Both, naming different hosts, is refused (400 bad_host): routing on one
// and an upstream reading the other is the split that host-restricted routes must never see.
// The rest of RFC 9113 §8.2.2 and §8.3 (connection-specific fields, TE other than trailers,
// missing, repeated or misplaced pseudo-header fields, upper-case names) nghttp2 refuses before
// a request exists (a stream error, PROTOCOL_ERROR), and no request reaches the gateway.
import type { IncomingMessage } from 'node:http'
import { deny, type Denial } from '../http/denial.js'

/** Sets `host` from `:authority`; a denial when the two disagree or the header list is too long. Only for HTTP/2 requests. */
export function h2RequestDenial(raw: IncomingMessage, maxHeaderBytes: number): Denial | undefined {
  const fields = raw.rawHeaders
  let size = 0
  for (let i = 0; i < fields.length; i++) size += fields[i]!.length + 16
  if (size > maxHeaderBytes) return deny('headers_too_large', `the header list is over ${maxHeaderBytes} bytes`)
  const headers = raw.headers
  const authority = headers[':authority']
  if (typeof authority !== 'string') return undefined
  const host = headers.host
  if (host !== undefined && (typeof host !== 'string' || host.toLowerCase() !== authority.toLowerCase())) {
    return deny('bad_host', ':authority and Host name different hosts')
  }
  headers.host = authority
  return undefined
}
