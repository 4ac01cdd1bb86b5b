import t from 'tap'
import { checkAudience, checkTokenClaims, claimAt, compileClaimPattern, compileCondition, grantedScopes, MAX_MATCHED_LENGTH, parseClaimPath, type ConditionSpec } from '../../src/auth/claims.js'

t.test('claim paths', async (t) => {
  t.same(parseClaimPath('sub'), ['sub'])
  t.same(parseClaimPath('realm_access.roles'), ['realm_access', 'roles'])
  t.same(parseClaimPath('"https://example.com/roles"'), ['https://example.com/roles'])
  t.same(parseClaimPath('"a.b".c'), ['a.b', 'c'])
  t.throws(() => parseClaimPath('a..b'))
  t.throws(() => parseClaimPath('"open'))
  t.equal(claimAt({ a: { b: 1 } }, ['a', 'b']), 1)
  t.equal(claimAt({ a: [1] }, ['a', '0']), undefined, 'no indexing into arrays')
  t.equal(claimAt({}, ['constructor']), undefined, 'no inherited properties')
})

/** Whether the condition holds for each value, in order. */
function holds(spec: ConditionSpec, values: unknown[]): boolean[] {
  const condition = compileCondition('c', spec)
  return values.map((v) => condition.test(v))
}

t.test('equals, one_of and contains take the claim as it is, of the same type', async (t) => {
  t.same(holds({ equals: 'gold' }, ['gold', 'Gold', ['gold'], undefined]), [true, false, false, false])
  t.same(holds({ equals: 1 }, [1, '1', true]), [true, false, false])
  t.same(holds({ one_of: ['eu', 'us'] }, ['eu', 'us', 'de', ['eu']]), [true, true, false, false], 'one_of takes a scalar')
  t.same(holds({ contains: 'admin' }, [['admin', 'x'], ['x'], 'admin', 'admin user', undefined]), [true, false, false, false, false], 'contains takes an array')
})

t.test('contains_any and contains_all: an array with some, or all, of the values', async (t) => {
  t.same(holds({ contains_any: ['a', 'b'] }, [['b'], ['x', 'a'], ['x'], [], 'a', 'a b']), [true, true, false, false, false, false])
  t.same(holds({ contains_all: ['a', 'b'] }, [['b', 'a', 'x'], ['a'], [], 'a b', undefined]), [true, false, false, false, false])
  t.same(holds({ contains_all: [1, true] }, [[1, true], ['1', 'true']]), [true, false], 'types count')
})

t.test('matches: anchored, strings only, bounded input', async (t) => {
  t.same(holds({ matches: 'admin' }, ['admin', 'superadmin', 'admin2', ['admin'], 7]), [true, false, false, false, false])
  t.same(holds({ matches: 'a|b' }, ['a', 'b', 'ab', 'xa']), [true, true, false, false], 'alternatives are anchored as a whole')
  t.same(holds({ matches: '[^@]+@example\\.com' }, ['alice@example.com', 'alice@example.com.evil.net', 'alice@example.org']), [true, false, false])
  t.same(holds({ matches: '.' }, ['é', '😀', 'ab']), [true, true, false], 'the u flag: one character is one code point')
  t.same(holds({ matches: 'a*' }, ['a'.repeat(MAX_MATCHED_LENGTH), 'a'.repeat(MAX_MATCHED_LENGTH + 1)]), [true, false], 'a longer string fails')
})

t.test('matches: an invalid, unsafe or anchor-escaping pattern is refused at load', async (t) => {
  t.throws(() => compileClaimPattern('a('), { message: /invalid regular expression "a\(": Unterminated group/, field: 'matches' })
  t.throws(() => compileClaimPattern('admin)|(.*'), { message: /invalid regular expression/ }, 'cannot close the anchoring group')
  t.throws(() => compileClaimPattern('(a+)+b'), { message: /may take exponential time/, field: 'matches' })
  t.throws(() => compileClaimPattern('(x*)*'), { message: /may take exponential time/ })
  t.ok(compileClaimPattern('team-[a-z0-9]+').test('team-42'))
})

t.test('exists', async (t) => {
  t.same(holds({ exists: true }, ['x', 0, false, [], null, undefined]), [true, true, true, true, false, false], 'null counts as absent')
  t.same(holds({ exists: false }, [undefined, null, 'x', 0]), [true, true, false, false])
  t.same(holds({ exists: true, one_of: ['a'] }, ['a', 'b']), [true, false], 'combined with other tests: all must hold')
  t.throws(() => compileCondition('c', { exists: false, equals: 'a' }), { message: /exists: false cannot be combined/, field: 'exists' })
})

t.test('an absent claim fails every condition but exists: false', async (t) => {
  const specs: ConditionSpec[] = [{ equals: 'a' }, { one_of: ['a'] }, { contains: 'a' }, { contains_any: ['a'] }, { contains_all: ['a'] }, { matches: '.*' }, { exists: true }]
  for (const spec of specs) t.same(holds(spec, [undefined]), [false], JSON.stringify(spec))
})

t.test('scopes from scope (space separated) and scp (array or string)', async (t) => {
  t.same(grantedScopes({ scope: 'a  b', scp: ['c', 1] }), ['a', 'b', 'c'])
  t.same(grantedScopes({ scp: 'd e' }), ['d', 'e'])
})

t.test('aud: present, a string or an array of strings, naming an accepted audience', async (t) => {
  const accepted = new Set(['orders-api'])
  t.equal(checkAudience({ aud: 'orders-api' }, accepted), undefined)
  t.equal(checkAudience({ aud: ['x', 'orders-api'] }, accepted), undefined)
  t.match(checkAudience({ aud: 'x' }, accepted), { status: 401, reason: 'wrong_audience' })
  t.match(checkAudience({}, accepted), { reason: 'wrong_audience', description: 'the token has no aud claim' })
  t.match(checkAudience({ aud: ['orders-api', 1] }, accepted), { reason: 'invalid_claims' })
  t.match(checkAudience({ aud: 5 }, accepted), { reason: 'invalid_claims' })
})

t.test('iat and sub, on every route', async (t) => {
  const now = Date.now()
  t.equal(checkTokenClaims({ iat: now / 1000, sub: 'a' }, 30_000, now), undefined)
  t.match(checkTokenClaims({ iat: now / 1000 + 60 }, 30_000, now), { reason: 'issued_in_future' })
  t.match(checkTokenClaims({ iat: '1' }, 30_000, now), { reason: 'invalid_claims' })
  t.match(checkTokenClaims({ sub: 7 }, 30_000, now), { reason: 'invalid_claims' })
})
