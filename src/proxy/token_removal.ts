// What the upstream must not see of the token. A query parameter that carries tokens is always
// removed: URLs end up in access logs, browser history and Referer headers (RFC 6750 §2.3,
// §5.3). With `forward_token: false` every other place the route reads tokens from goes too:
// src/proxy/forward.ts leaves its token headers out and cuts its token cookies (cookiesWithout)
// out of Cookie, while the other cookies stay.
import { afterPair, findCookie, parameterNameIs } from '../auth/extract.js'
import { splitTarget } from '../routing/normalize.js'

/**
 * The query string of `url` without the named parameters: without the `?`, '' when nothing
 * is left. The other parameters stay byte for byte.
 * Names are matched as the extractor matches them (percent-decoded).
 */
export function queryWithout(url: string, names: readonly string[]): string {
  const q = url.indexOf('?')
  if (q < 0) return ''
  const kept: string[] = []
  for (let i = q + 1; i < url.length; ) {
    const end = afterPair(url, i, '&')
    const pairEnd = url[end - 1] === '&' ? end - 1 : end
    let nameEnd = url.indexOf('=', i)
    if (nameEnd < 0 || nameEnd > pairEnd) nameEnd = pairEnd
    if (pairEnd > i && !names.some((name) => parameterNameIs(url, i, nameEnd, name))) kept.push(url.slice(i, pairEnd))
    i = end
  }
  return kept.join('&')
}

/**
 * The query of a request target as its route forwards it, with its `?` ('' when none is left):
 * the route's token parameters removed, the rest byte for byte. For forwarded requests,
 * WebSocket upgrades and `jwtgate explain`.
 */
export function forwardedQuery(target: string, tokenParameters: readonly string[]): string {
  if (tokenParameters.length === 0) return splitTarget(target).query
  const kept = queryWithout(target, tokenParameters)
  return kept ? `?${kept}` : ''
}

/** A Cookie header without the named cookies; undefined when none is left. */
export function cookiesWithout(header: string, names: readonly string[]): string | undefined {
  const kept: string[] = []
  for (let i = 0; i < header.length; ) {
    const end = afterPair(header, i, ';')
    const pair = header.slice(i, header[end - 1] === ';' ? end - 1 : end).trim()
    // findCookie on the pair alone answers "is this pair one of the names".
    if (pair && !names.some((name) => findCookie(pair, name, 0) >= 0)) kept.push(pair)
    i = end
  }
  return kept.length ? kept.join('; ') : undefined
}
