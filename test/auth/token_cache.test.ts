import t from 'tap'
import { DEFAULT_TOKEN_SOURCES } from '../../src/auth/token_sources.js'
import { secretIssuer } from '../../src/auth/issuer.js'
import { prepareKey } from '../../src/auth/keys.js'
import { TokenCache } from '../../src/auth/token_cache.js'

const settings = { name: 'i', issuer: 'i', audiences: ['a'], algorithms: ['HS256'], clockSkewMs: 1000, requireExp: true, tokenSources: DEFAULT_TOKEN_SOURCES }
const issuer = secretIssuer(settings, Buffer.from('s'.repeat(32)))

t.test('an entry lives until exp plus the skew', async (t) => {
  const cache = new TokenCache(10)
  const key = issuer.keyFor(undefined, 'HS256') as ReturnType<typeof prepareKey>
  const now = 1_000_000_000_000
  cache.set('tok', issuer, key, { exp: now / 1000 + 2 }, now)
  t.ok(cache.get('tok', now + 2999))
  t.equal(cache.get('tok', now + 3000), undefined)
  t.equal(cache.size, 0, 'an expired entry is dropped')
})

t.test('a key the issuer no longer holds invalidates its tokens', async (t) => {
  const cache = new TokenCache(10)
  const stale = prepareKey(undefined, Buffer.from('t'.repeat(32)), ['HS256'], settings)
  cache.set('tok', issuer, stale, { exp: Date.now() / 1000 + 60 }, Date.now())
  t.equal(cache.get('tok', Date.now()), undefined)
})

t.test('bounded: the oldest entry goes first; 0 turns the cache off', async (t) => {
  const cache = new TokenCache(2)
  const key = issuer.keyFor(undefined, 'HS256') as ReturnType<typeof prepareKey>
  const now = Date.now()
  for (const tok of ['a', 'b', 'c']) cache.set(tok, issuer, key, { exp: now / 1000 + 60 }, now)
  t.equal(cache.size, 2)
  t.equal(cache.get('a', now), undefined)
  t.ok(cache.get('c', now))
  const off = new TokenCache(0)
  off.set('a', issuer, key, { exp: now / 1000 + 60 }, now)
  t.equal(off.size, 0)
})
