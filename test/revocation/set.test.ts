// The in-memory set and the store's states, with the clock passed in: no waiting.
import t from 'tap'
import { createLogger } from '../../src/log.js'
import { RevocationSet, scopeKey, unscope } from '../../src/revocation/set.js'
import { LocalUses, RevocationStore, type Revocation, type RevocationSettings } from '../../src/revocation/store.js'

const NOW = 1_800_000_000_000

t.test('jti entries: revoked until their expiry, then forgotten on the lookup', async (t) => {
  const set = new RevocationSet()
  set.addJti('a', NOW + 1000)
  t.equal(set.isRevoked({ jti: 'a' }, NOW), true)
  t.equal(set.isRevoked({ jti: 'b' }, NOW), false)
  t.equal(set.isRevoked({ jti: 7 }, NOW), false, 'a jti that is not a string matches nothing')
  t.equal(set.isRevoked({}, NOW), false)
  set.addJti('a', NOW + 500)
  t.equal(set.jti.get('a'), NOW + 1000, 'the later expiry is kept')
  t.equal(set.isRevoked({ jti: 'a' }, NOW + 1000), false, 'expired')
  t.equal(set.jti.size, 0, 'and deleted by the lookup that met it')
})

t.test('subject entries: tokens issued before the moment, or without iat', async (t) => {
  const set = new RevocationSet()
  set.addSubject('bob', 1000, NOW + 1000)
  t.equal(set.isRevoked({ sub: 'bob', iat: 999 }, NOW), true)
  t.equal(set.isRevoked({ sub: 'bob', iat: 999.5 }, NOW), true)
  t.equal(set.isRevoked({ sub: 'bob', iat: 1000 }, NOW), false, 'issued at the moment: after it')
  t.equal(set.isRevoked({ sub: 'bob' }, NOW), true, 'no iat')
  t.equal(set.isRevoked({ sub: 'bob', iat: '1' }, NOW), true, 'an iat that is not a number proves nothing')
  t.equal(set.isRevoked({ sub: 'carol', iat: 1 }, NOW), false)
  set.addSubject('bob', 900, NOW + 5000)
  t.same(set.subjects.get('bob'), { before: 1000, expiresAt: NOW + 5000 }, 'never weakened; the longer life kept')
  set.addSubject('bob', 2000, NOW + 10)
  t.equal(set.subjects.get('bob')!.before, 2000)
  t.equal(set.isRevoked({ sub: 'bob', iat: 1 }, NOW + 5000), false, 'expired')
  t.equal(set.subjects.size, 0)
  set.addSubject('mallory', Infinity, Infinity)
  t.equal(set.isRevoked({ sub: 'mallory', iat: 4e9 }, NOW * 10), true, 'without before: every token, for good')
})

t.test('a jti or a subject entry is enough', async (t) => {
  const set = new RevocationSet()
  set.addSubject('bob', 1000, NOW + 1000)
  t.equal(set.isRevoked({ jti: 'x', sub: 'bob', iat: 1 }, NOW), true)
  set.addJti('x', NOW + 1000)
  t.equal(set.isRevoked({ jti: 'x', sub: 'carol', iat: 1 }, NOW), true)
})

t.test('the sweep removes what has expired', async (t) => {
  const set = new RevocationSet()
  for (let i = 0; i < 100; i++) set.addJti(`j${i}`, NOW + i)
  set.addSubject('a', 1, NOW + 10)
  set.addSubject('b', 1, NOW + 1000)
  t.equal(set.sweep(NOW + 50), 52, 'j0 … j50 and a: an entry goes at its expiry')
  t.equal(set.jti.size, 49)
  t.same([...set.subjects.keys()], ['b'])
  const other = new RevocationSet()
  other.addJti('z', NOW)
  set.replaceWith(other)
  t.same([...set.jti.keys()], ['z'])
  t.equal(set.size, 1)
})

t.test('local replay protection: first use only, for the ttl', async (t) => {
  const uses = new LocalUses()
  t.equal(uses.claim('k', 1000, NOW), true)
  t.equal(uses.claim('k', 1000, NOW + 999), false)
  t.equal(uses.claim('k', 1000, NOW + 1000), true, 'after its lifetime the key is free again')
  uses.sweep(NOW + 5000)
  t.equal(uses.claim('k', 1000, NOW + 5000), true)
})

class TestStore extends RevocationStore {
  persisted: Revocation[] = []
  protected async open() {
    this.synced(0)
  }
  protected async close() {}
  protected async persist(entry: Revocation) {
    this.persisted.push(entry)
  }
  protected async claimFirstUse() {
    return true
  }
  lose(error: string) {
    this.unavailable(error)
  }
  back() {
    this.synced(0)
  }
}

const settings = (failClosed: boolean): RevocationSettings => ({ backend: 'memory', failClosed, maxTokenLifetimeMs: 3_600_000 })
const silent = createLogger('silent')

t.test('the states: what check answers and what readiness says', async (t) => {
  for (const failClosed of [false, true]) {
    const store = new TestStore(settings(failClosed), silent)
    t.equal(store.check({ jti: 'a' }, Date.now()), undefined, 'idle (offline tools): nothing is revoked')
    await store.start()
    t.teardown(() => store.stop())
    await store.revokeJti('a', Math.floor(Date.now() / 1000) + 60)
    t.match(store.check({ jti: 'a' }, Date.now()), { status: 401, reason: 'revoked', description: 'token revoked' })
    t.equal(store.check({ jti: 'b' }, Date.now()), undefined)
    t.same(store.readiness(), {})
    store.lose('connection refused')
    if (failClosed) {
      t.match(store.check({ jti: 'b' }, Date.now()), { status: 503, reason: 'revocation_unavailable' }, 'fail_closed: 503')
      t.match(store.readiness(), { notReady: /unavailable since .* \(connection refused\); refusing tokens \(fail_closed\)/ })
    } else {
      t.equal(store.check({ jti: 'b' }, Date.now()), undefined, 'serve_stale: the last list')
      t.match(store.check({ jti: 'a' }, Date.now()), { reason: 'revoked' })
      t.match(store.readiness(), { degraded: /unavailable since .* \(connection refused\); serving the list synced at/ })
    }
    t.match(store.stats(), { state: 'stale', unavailable_since: String, last_error: 'connection refused' })
    store.back()
    t.same(store.readiness(), {})
    t.match(store.stats(), { state: 'synced', unavailable_since: null, last_error: null, jti: 1 })
  }
})

t.test('revocation entries: margins, defaults and subjects', async (t) => {
  const store = new TestStore(settings(false), silent)
  store.marginMs = 30_000
  const before = Date.now()
  const jti = await store.revokeJti('a', 2_000_000_000)
  t.same(jti, { kind: 'jti', id: 'a', exp: 2_000_000_000, expiresAt: 2_000_000_000_000 + 30_000 })
  const noExp = await store.revokeJti('b')
  t.ok(noExp.expiresAt >= before + 3_600_000 + 30_000 && noExp.expiresAt <= Date.now() + 3_600_000 + 30_000, 'without exp: max_token_lifetime')
  const sub = await store.revokeSubject('bob')
  t.equal(
    (sub as { before: number }).before,
    Math.floor((Date.now() + 30_000) / 1000) + 1,
    'before defaults to past every iat accepted now: now + the margin (the largest clock_skew), + 1 s',
  )
  t.equal(sub.expiresAt, (sub as { before: number }).before * 1000 + 3_600_000 + 30_000)
  t.equal(store.persisted.length, 3, 'each written to the backend')
  const denial = await store.consumeOnce({ iss: 'i' })
  t.match(denial, { status: 401, reason: 'invalid_claims', description: 'a one-time token needs a jti claim' })
})

t.test('numeric jti and issuer scopes', async (t) => {
  const set = new RevocationSet()
  set.addJti('7', NOW + 1000)
  t.ok(set.isRevoked({ jti: 7 }, NOW), 'a numeric jti is looked up by its decimal form')
  t.notOk(set.isRevoked({ jti: { id: 7 } }, NOW), 'any other type has no jti')
  set.addJti('x', NOW + 1000, 'https://a/')
  t.ok(set.isRevoked({ jti: 'x', iss: 'https://a/' }, NOW))
  t.notOk(set.isRevoked({ jti: 'x', iss: 'https://b/' }, NOW), 'another issuer')
  t.notOk(set.isRevoked({ jti: 'x' }, NOW))
  set.addSubject('bob', 1000, NOW + 1000, 'https://a/')
  t.ok(set.isRevoked({ sub: 'bob', iss: 'https://a/', iat: 999 }, NOW))
  t.notOk(set.isRevoked({ sub: 'bob', iss: 'https://b/', iat: 999 }, NOW))
  t.notOk(set.isRevoked({ sub: 'bob', iss: 'https://a/', iat: 1000 }, NOW))
  set.addSubject('bob', 500, NOW + 1000)
  t.ok(set.isRevoked({ sub: 'bob', iss: 'https://b/', iat: 499 }, NOW), 'an entry of every issuer')
  t.same(unscope(scopeKey('x', 'https://a/')), { id: 'x', iss: 'https://a/' })
  t.same(unscope('x'), { id: 'x' })
})
