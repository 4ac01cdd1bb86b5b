// A route's token sources: its own `token_sources`, or its issuers' merged, each place with the
// issuers that accept tokens found there (src/auth/extract.ts reads them per request).
import type { DocPath, OnProblem } from '../policy/problems.js'
import type { TokenSourceDocument } from '../policy/schema.js'
import type { Issuer } from './issuer.js'
import { IssuerSet } from './issuer_set.js'
import { sourcePlace, tokenSources, type SourcePlace, type TokenSource, type TokenSources } from './token_sources.js'

// The extractor keeps one bit per header source.
const MAX_HEADER_SOURCES = 30

/**
 * A route's token sources: its own `token_sources` (read for every issuer of the route), or
 * else each issuer's, merged: one place read by several issuers is one source accepting all
 * of them, and a token found there may only be checked by one of them.
 */
export function compileRouteTokenSources(
  override: readonly TokenSourceDocument[] | undefined,
  issuers: readonly Issuer[],
  fail: OnProblem,
  dpop = false,
): TokenSources | undefined {
  const places = new Map<string, { place: SourcePlace; issuers: Issuer[] }>()
  let ok = true
  const read = (place: SourcePlace, by: readonly Issuer[], at: DocPath) => {
    const known = places.get(place.key)
    if (!known) {
      places.set(place.key, { place, issuers: [...by] })
      return
    }
    if (override) {
      fail(at, `the ${place.what} is already a token source`)
      ok = false
    } else if (known.place.prefix !== place.prefix) {
      fail(
        ['auth', 'issuers'],
        `issuers ${known.issuers.map((i) => i.name).join(', ')} and ${by[0]!.name} read the ${place.what} with different prefixes ("${known.place.prefix}" and "${place.prefix}"); a route reads a header one way`,
      )
      ok = false
    } else {
      for (const issuer of by) if (!known.issuers.includes(issuer)) known.issuers.push(issuer)
    }
  }
  if (override) {
    override.forEach((spec, i) => {
      const place = sourcePlace(spec, ['token_sources', i], fail)
      if (!place) ok = false
      else read(place, issuers, ['token_sources', i])
    })
  } else {
    for (const issuer of issuers) {
      for (const spec of issuer.tokenSources) {
        // Checked when the issuer compiled.
        const place = sourcePlace(spec, ['auth', 'issuers'], fail)
        if (place) read(place, [issuer], ['auth', 'issuers'])
      }
    }
  }
  const all: TokenSource[] = [...places.values()].map(({ place, issuers: by }) => ({
    kind: place.kind,
    name: place.name,
    prefix: place.prefix,
    what: place.what,
    unprefixed: place.unprefixed,
    issuers: new IssuerSet(by),
    // RFC 9449 §7.1: a DPoP-bound token comes as `Authorization: DPoP <token>`.
    dpop: dpop && place.kind === 'header' && place.name === 'authorization',
  }))
  if (all.filter((s) => s.kind === 'header').length > MAX_HEADER_SOURCES) {
    fail(['auth', 'issuers'], `a route reads tokens from at most ${MAX_HEADER_SOURCES} headers`)
    ok = false
  }
  return ok ? tokenSources(all) : undefined
}
