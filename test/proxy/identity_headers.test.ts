import t from 'tap'
import { parseClaimPath } from '../../src/auth/claims.js'
import { encodeClaim, headerSafe, headerStripper, injectIdentity } from '../../src/proxy/identity_headers.js'

t.test('the stripper removes mapped names and reserved prefixes in any spelling', async (t) => {
  const strip = headerStripper(['X-User-Id'], ['x-jwt-'])
  const headers: Record<string, string> = { 'x-user-id': 'a', x_user_id: 'b', 'x-jwt-claims': 'c', x_jwt_sub: 'd', 'x-user-idx': 'keep', accept: 'keep' }
  strip(headers)
  t.same(headers, { 'x-user-idx': 'keep', accept: 'keep' })
})

t.test('claims are encoded as declared', async (t) => {
  t.equal(encodeClaim(['a', 'b'], { json: false, join: ',' }), 'a,b')
  t.equal(encodeClaim(['a', 'b'], { json: false, join: ' ' }), 'a b')
  t.equal(encodeClaim(['a', 'b'], { json: true }), '["a","b"]')
  t.equal(encodeClaim({ k: 1 }, { json: false, join: ',' }), '{"k":1}')
  t.equal(encodeClaim(42, { json: false, join: ',' }), '42')
  t.equal(encodeClaim(false, { json: false, join: ',' }), 'false')
  t.equal(encodeClaim(undefined, { json: false, join: ',' }), undefined)
  t.equal(encodeClaim(null, { json: false, join: ',' }), undefined)
})

t.test('values never carry CR, LF or non-ASCII raw', async (t) => {
  t.equal(headerSafe('plain value'), 'plain value')
  t.equal(headerSafe('a\r\nb'), 'a%0D%0Ab')
  t.equal(headerSafe('José 100%'), 'Jos%C3%A9 100%25')
  t.equal(headerSafe('50%'), '50%25', "every '%' is encoded, so decoding is always right")
  t.equal(decodeURIComponent(headerSafe('a%41')), 'a%41')
  t.equal(headerSafe('😀'), '%F0%9F%98%80')
  t.equal(decodeURIComponent(headerSafe('x\ty\u0000z')), 'x\ty\u0000z')
})

t.test('nested and quoted claim paths; an absent claim gives no header', async (t) => {
  const headers: Record<string, unknown> = {}
  const claims = { sub: 'alice', realm_access: { roles: ['r1', 'r2'] }, 'https://example.com/roles': ['admin'] }
  injectIdentity(headers as never, claims, [
    { name: 'x-roles', claim: parseClaimPath('realm_access.roles'), encoding: { json: false, join: ',' } },
    { name: 'x-ns-roles', claim: parseClaimPath('"https://example.com/roles"'), encoding: { json: true } },
    { name: 'x-email', claim: parseClaimPath('email'), encoding: { json: false, join: ',' } },
    { name: 'x-proto', claim: parseClaimPath('__proto__.polluted'), encoding: { json: false, join: ',' } },
  ])
  t.same(headers, { 'x-roles': 'r1,r2', 'x-ns-roles': '["admin"]' })
})
