import t from 'tap'
import {
  checkAudience,
  checkTokenClaims,
  claimAt,
  compileClaimPattern,
  conditionHolds,
  compileCondition,
  grantedScopes,
  MAX_MATCHED_LENGTH,
  parseClaimPath,
} from '../../src/auth/claims.js'
import type { DocPath } from '../../src/policy/problems.js'
import type { ClaimConditionDocument as ConditionSpec } from '../../src/policy/schema.js'

/** The problems a compile step said, as `place: message`. */
function said<T>(compile: (at: DocPath, problem: (at: DocPath, m: string) => void) => T): { value: T; problems: string[] } {
  const problems: string[] = []
  const value = compile(['x'], (at, m) => problems.push(`${at.join('.')}: ${m}`))
  return { value, problems }
}
const path = (text: string) => said((at, problem) => parseClaimPath(text, at, problem))
const pattern = (source: string) => said((at, problem) => compileClaimPattern(source, at, problem))

t.test('claim paths', async (t) => {
  t.same(path('sub').value, ['sub'])
  t.same(path('realm_access.roles').value, ['realm_access', 'roles'])
  t.same(path('"https://example.com/roles"').value, ['https://example.com/roles'])
  t.same(path('"a.b".c'), { value: ['a.b', 'c'], problems: [] })
  t.same(path('a..b'), { value: undefined, problems: ['x: empty name in claim path a..b'] })
  t.same(path('"open'), { value: undefined, problems: ['x: unclosed quote in claim path "open'] })
  t.equal(claimAt({ a: { b: 1 } }, ['a', 'b']), 1)
  t.equal(claimAt({ a: [1] }, ['a', '0']), undefined, 'no indexing into arrays')
  t.equal(claimAt({}, ['constructor']), undefined, 'no inherited properties')
})

/** Whether the condition holds for each value, in order. */
function holds(spec: ConditionSpec, values: unknown[]): boolean[] {
  const condition = compileCondition('c', spec, ['claims', 'c'], (_at, m) => {
    throw new Error(m)
  })!
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
  t.same(
    holds({ contains_all: [1, true] }, [
      [1, true],
      ['1', 'true'],
    ]),
    [true, false],
    'types count',
  )
})

t.test('matches: anchored, strings only, bounded input', async (t) => {
  t.same(holds({ matches: 'admin' }, ['admin', 'superadmin', 'admin2', ['admin'], 7]), [true, false, false, false, false])
  t.same(holds({ matches: 'a|b' }, ['a', 'b', 'ab', 'xa']), [true, true, false, false], 'alternatives are anchored as a whole')
  t.same(holds({ matches: '[^@]+@example\\.com' }, ['alice@example.com', 'alice@example.com.evil.net', 'alice@example.org']), [true, false, false])
  t.same(holds({ matches: '.' }, ['é', '😀', 'ab']), [true, true, false], 'the u flag: one character is one code point')
  t.same(holds({ matches: 'a*' }, ['a'.repeat(MAX_MATCHED_LENGTH), 'a'.repeat(MAX_MATCHED_LENGTH + 1)]), [true, false], 'a longer string fails')
})

t.test('matches: an invalid, unsafe or anchor-escaping pattern is refused at load', async (t) => {
  t.match(pattern('a('), { value: undefined, problems: [/^x: invalid regular expression "a\(": Unterminated group/] })
  t.match(pattern('admin)|(.*'), { value: undefined, problems: [/^x: invalid regular expression/] }, 'cannot close the anchoring group')
  t.match(pattern('(a)\\1'), { value: undefined, problems: [/^x: regular expression "\(a\)\\\\1" is refused: it cannot run in linear time/] })
  t.match(pattern('x(?=y)'), { value: undefined, problems: [/cannot run in linear time/] }, 'lookahead')
  t.match(pattern('(?<=y)x'), { value: undefined, problems: [/cannot run in linear time/] }, 'lookbehind')
  t.ok(pattern('team-[a-z0-9]+').value?.test('team-42'))
  t.match(said((at, problem) => compileCondition('c', { matches: '(a)\\1' }, at, problem)).problems, [/^x\.matches: /], 'said at the matches field')
  t.match(
    said((at, problem) => compileCondition('a..b', { matches: '(a)\\1' }, at, problem)).problems,
    ['x: empty name in claim path a..b'],
    'a bad path: said at the label',
  )
})

t.test('matches: slow patterns run on the linear engine', async (t) => {
  // On V8's backtracking engine the first costs 0.3-0.8 s per test at 1024 characters (O(n³)),
  // the second about a minute (O(n⁴)), (a+)+b is exponential: 50 tests of each would exceed
  // the test's timeout by far. On RE2 each is linear in the claim's length.
  const claim = 'a-'.repeat(MAX_MATCHED_LENGTH / 2)
  for (const source of ['.*-.*-.*-prod', '.*-.*-.*-.*-prod', '(a+)+b', '(x*)*y', '(a|a)*b']) {
    const compiled = pattern(source)
    t.same(compiled.problems, [], `${source} is accepted`)
    t.equal(compiled.value?.engine, 're2', `${source} runs on RE2`)
    let held = 0
    for (let i = 0; i < 50; i++) if (compiled.value!.test(claim)) held++
    t.equal(held, 0, `${source} does not match`)
  }
  t.same(holds({ matches: '.*-.*-.*-prod' }, ['a-b-c-prod', 'a-b-prod', claim]), [true, false, false])
})

t.test('matches: run once per token (its claims object) and condition, not on every request', async (t) => {
  const condition = said((at, problem) => compileCondition('email', { matches: '[^@]+@example\\.com' }, at, problem)).value!
  let runs = 0
  const test = condition.test
  condition.test = (v) => {
    runs++
    return test(v)
  }
  const cached = { email: 'alice@example.com' }
  for (let i = 0; i < 100; i++) t.equal(conditionHolds(condition, cached), true)
  t.equal(runs, 1, 'a cached token, seen 100 times: one run')
  t.equal(conditionHolds(condition, { email: 'bob@example.org' }), false)
  t.equal(conditionHolds(condition, { email: 'bob@example.org' }), false)
  t.equal(runs, 3, 'another claims object (another token, or no cache) runs again')
  const plain = said((at, problem) => compileCondition('role', { equals: 'admin' }, at, problem)).value!
  t.equal(plain.memo, undefined, 'cheap conditions are not remembered')
})

t.test('exists', async (t) => {
  t.same(holds({ exists: true }, ['x', 0, false, [], null, undefined]), [true, true, true, true, false, false], 'null counts as absent')
  t.same(holds({ exists: false }, [undefined, null, 'x', 0]), [true, true, false, false])
  t.same(holds({ exists: true, one_of: ['a'] }, ['a', 'b']), [true, false], 'combined with other tests: all must hold')
  t.match(
    said((at, problem) => compileCondition('c', { exists: false, equals: 'a' }, at, problem)),
    { value: undefined, problems: [/^x\.exists: exists: false cannot be combined/] },
  )
})

t.test('an absent claim fails every condition but exists: false', async (t) => {
  const specs: ConditionSpec[] = [
    { equals: 'a' },
    { one_of: ['a'] },
    { contains: 'a' },
    { contains_any: ['a'] },
    { contains_all: ['a'] },
    { matches: '.*' },
    { exists: true },
  ]
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
