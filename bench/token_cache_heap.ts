// `node --expose-gc --import tsx bench/token_cache_heap.ts` (issue 16 item 12): heap held per
// verified-token cache entry, measured, against what token_cache.ts entryBytes counts, and the
// heap a cache bounded by the default max_bytes holds when filled with large tokens.
import { secretIssuer } from '../src/auth/issuer.js'
import type { PreparedKey } from '../src/auth/keys.js'
import { entryBytes, TokenCache, tokenKey } from '../src/auth/token_cache.js'
import { DEFAULT_TOKEN_SOURCES } from '../src/auth/token_sources.js'

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')
const settings = {
  name: 'i',
  issuer: 'i',
  audiences: ['a'],
  algorithms: ['HS256' as const],
  clockSkewMs: 1000,
  requireExp: true,
  tokenSources: DEFAULT_TOKEN_SOURCES,
}
const issuer = secretIssuer(settings, Buffer.from('s'.repeat(32)))
const key = issuer.keyFor(undefined, 'HS256') as PreparedKey
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')

/** A token as the gateway sees it (a slice of the Authorization header) and its parsed claims. */
function make(i: number, groups: number): { token: string; claims: Record<string, unknown> } {
  const claims = {
    iss: 'i',
    sub: `user-${i}`,
    aud: 'a',
    exp: Math.floor(Date.now() / 1000) + 3600,
    groups: Array.from({ length: groups }, (_, k) => `group-number-${k}-${i}`),
  }
  const header = `Bearer ${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.${'s'.repeat(43)}`
  const token = header.slice(7)
  return { token, claims: JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown> }
}

function heapOf(fill: (cache: TokenCache) => void, cache: TokenCache): number {
  gc!()
  const before = process.memoryUsage().heapUsed
  fill(cache)
  gc!()
  return process.memoryUsage().heapUsed - before
}

for (const [groups, n] of [
  [3, 20_000],
  [60, 5_000],
  [450, 2_000],
] as const) {
  const sample = make(0, groups)
  const cache = new TokenCache(1_000_000)
  const heap = heapOf((c) => {
    for (let i = 0; i < n; i++) {
      const { token, claims } = make(i, groups)
      c.set(token, tokenKey(token), issuer, key, claims, Date.now())
    }
  }, cache)
  console.log(
    `token ${sample.token.length} B, payload JSON ${JSON.stringify(sample.claims).length} B: ${(heap / n).toFixed(0)} B of heap per entry, counted ${entryBytes(sample.token)} B`,
  )
}
const bounded = new TokenCache(10_000, 32 * 1024 * 1024)
const heap = heapOf((c) => {
  for (let i = 0; i < 10_000; i++) {
    const { token, claims } = make(i, 450)
    c.set(token, tokenKey(token), issuer, key, claims, Date.now())
  }
}, bounded)
console.log(`10,000 tokens of ~12.6 KB into the default bounds (10,000 entries, 32 MiB): ${bounded.size} kept, ${(heap / 1024 / 1024).toFixed(1)} MiB of heap`)
