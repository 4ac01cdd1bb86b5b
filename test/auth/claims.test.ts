import t from 'tap'
import { authorize, claimAt, compileRequirement, grantedScopes, parseClaimPath } from '../../src/auth/claims.js'

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

t.test('conditions: equals, one_of, contains', async (t) => {
  const r = compileRequirement({ tier: { equals: 'gold' }, region: { one_of: ['eu', 'us'] }, 'realm_access.roles': { contains: 'admin' } }, undefined)
  const ok = { tier: 'gold', region: 'eu', realm_access: { roles: ['admin'] } }
  t.equal(authorize(ok, r), undefined)
  t.match(authorize({ ...ok, tier: 'silver' }, r), { status: 403, reason: 'insufficient_claims', description: /tier/ })
  t.match(authorize({ ...ok, region: ['eu'] }, r), { status: 403 }, 'one_of takes a scalar')
  t.match(authorize({ ...ok, realm_access: { roles: 'admin' } }, r), { status: 403 }, 'contains takes an array')
  t.match(authorize({ tier: 'gold', region: 'eu' }, r), { status: 403 }, 'an absent claim fails')
})

t.test('scopes', async (t) => {
  t.same(grantedScopes({ scope: 'a  b', scp: ['c', 1] }), ['a', 'b', 'c'])
  const r = compileRequirement(undefined, ['orders:write', 'orders:read'])
  t.equal(authorize({ scope: 'orders:read orders:write' }, r), undefined)
  t.match(authorize({ scope: 'orders:read' }, r), { status: 403, scope: 'orders:write orders:read' })
})
