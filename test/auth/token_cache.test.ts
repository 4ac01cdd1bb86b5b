import t from 'tap'
import { DEFAULT_TOKEN_SOURCES } from '../../src/auth/token_sources.js'
import { secretIssuer } from '../../src/auth/issuer.js'
import { prepareKey } from '../../src/auth/keys.js'
import { entryBytes, TokenCache, tokenKey } from '../../src/auth/token_cache.js'

const settings = { name: 'i', issuer: 'i', audiences: ['a'], algorithms: ['HS256'], clockSkewMs: 1000, requireExp: true, tokenSources: DEFAULT_TOKEN_SOURCES }
const issuer = secretIssuer(settings, Buffer.from('s'.repeat(32)))

t.test('an entry lives until exp plus the skew', async (t) => {
  const cache = new TokenCache(10)
  const key = issuer.keyFor(undefined, 'HS256') as ReturnType<typeof prepareKey>
  const now = 1_000_000_000_000
  cache.set('tok', tokenKey('tok'), issuer, key, { exp: now / 1000 + 2 }, now)
  t.ok(cache.get(tokenKey('tok'), now + 2999))
  t.equal(cache.get(tokenKey('tok'), now + 3000), undefined)
  t.equal(cache.size, 0, 'an expired entry is dropped')
})

t.test('a key the issuer no longer holds invalidates its tokens', async (t) => {
  const cache = new TokenCache(10)
  const stale = prepareKey(undefined, Buffer.from('t'.repeat(32)), ['HS256'], settings)
  cache.set('tok', tokenKey('tok'), issuer, stale, { exp: Date.now() / 1000 + 60 }, Date.now())
  t.equal(cache.get(tokenKey('tok'), Date.now()), undefined)
})

t.test('bounded: the oldest entry goes first; 0 turns the cache off', async (t) => {
  const cache = new TokenCache(2)
  const key = issuer.keyFor(undefined, 'HS256') as ReturnType<typeof prepareKey>
  const now = Date.now()
  for (const tok of ['a', 'b', 'c']) cache.set(tok, tokenKey(tok), issuer, key, { exp: now / 1000 + 60 }, now)
  t.equal(cache.size, 2)
  t.equal(cache.get(tokenKey('a'), now), undefined)
  t.ok(cache.get(tokenKey('c'), now))
  const off = new TokenCache(0)
  off.set('a', tokenKey('a'), issuer, key, { exp: now / 1000 + 60 }, now)
  t.equal(off.size, 0)
})

t.test('bounded by bytes: large tokens evict the oldest until the budget holds', async (t) => {
  const key = issuer.keyFor(undefined, 'HS256') as ReturnType<typeof prepareKey>
  const now = Date.now()
  // A 15 KiB token: its payload is most of it, as with a token carrying hundreds of groups.
  const big = (i: number) => `eyJhbGciOiJIUzI1NiJ9.${String(i).padStart(6, '0')}${'A'.repeat(15 * 1024)}.${'s'.repeat(43)}`
  const each = entryBytes(big(0))
  // Its payload, base64url, is 15 KiB: some 11.5 KB of JSON, 2.5 times that as parsed objects.
  t.ok(each > ((15 * 1024 * 3) / 4) * 2.5, `a 15 KiB token counts ${each} bytes: its parsed claims and its key`)
  const cache = new TokenCache(10_000, 10 * each)
  for (let i = 0; i < 100; i++) cache.set(big(i), tokenKey(big(i)), issuer, key, { exp: now / 1000 + 60 }, now)
  t.equal(cache.size, 10, 'ten fit, whatever max_entries allows')
  t.ok(cache.bytes <= 10 * each)
  t.equal(cache.get(tokenKey(big(89)), now), undefined, 'the oldest went first')
  t.ok(cache.get(tokenKey(big(99)), now))
  // Small tokens are not held back by the byte bound.
  const small = new TokenCache(3, 10 * each)
  for (const tok of ['a.b.c', 'd.e.f', 'g.h.i', 'j.k.l']) small.set(tok, tokenKey(tok), issuer, key, { exp: now / 1000 + 60 }, now)
  t.equal(small.size, 3, 'max_entries still holds')
  // A token larger than the whole budget is not kept, and does not empty the cache.
  const tight = new TokenCache(10, each - 1)
  tight.set('a.b.c', tokenKey('a.b.c'), issuer, key, { exp: now / 1000 + 60 }, now)
  tight.set(big(0), tokenKey(big(0)), issuer, key, { exp: now / 1000 + 60 }, now)
  t.same([tight.size, tight.get(tokenKey(big(0)), now)], [1, undefined])
  // Expired and re-set entries give their bytes back.
  const counted = new TokenCache(10, 100 * each)
  counted.set(big(1), tokenKey(big(1)), issuer, key, { exp: now / 1000 + 1 }, now)
  counted.set(big(1), tokenKey(big(1)), issuer, key, { exp: now / 1000 + 1 }, now)
  t.equal(counted.bytes, each, 'the same token set twice counts once')
  t.equal(counted.get(tokenKey(big(1)), now + 5000), undefined)
  t.equal(counted.bytes, 0)
})
