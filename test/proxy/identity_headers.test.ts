import t from 'tap'
import { parseClaimPath } from '../../src/auth/claims.js'
import { policyProblems } from '../support/harness.js'
import { encodeClaim, headerSafe, headerStripper, identityHeaders, type IdentityHeader } from '../../src/proxy/identity_headers.js'

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

t.test('a separator inside an array element is escaped: no element can forge another', async (t) => {
  const comma = { json: false as const, join: ',' }
  t.equal(encodeClaim(['eng,admin'], comma), 'eng%2Cadmin', 'one group, not eng and admin')
  t.not(encodeClaim(['eng,admin'], comma), encodeClaim(['eng', 'admin'], comma), 'never what a real admin gets')
  t.equal(encodeClaim(['a b', 'c'], { json: false, join: ' ' }), 'a%20b c')
  t.equal(encodeClaim(['a, b', 'c'], { json: false, join: ', ' }), 'a%2C%20b, c', 'every character of the separator')
  t.equal(encodeClaim([{ k: [1, 2] }], comma), '{"k":[1%2C2]}', 'objects in arrays too')
  t.equal(encodeClaim(['50%', 'Jos\u00e9'], comma), '50%25,Jos%C3%A9', '% and non-ASCII as before')
  t.equal(encodeClaim('eng,admin', comma), 'eng,admin', "a string claim is the issuer's own word: as it is")
  // Round trip: split on the separator, decode each element, and the array comes back.
  const samples = [['eng,admin', 'x'], ['', ','], [',,,'], ['a%2Cb', '%', 'é,😀'], ['a b', ' ,', 'c']]
  for (const join of [',', ' ', ', ', ';', '|']) {
    for (const groups of samples) {
      const encoded = encodeClaim(groups, { json: false, join })!
      t.same(encoded.split(join).map(decodeURIComponent), groups, `${JSON.stringify(groups)} with ${JSON.stringify(join)}`)
    }
  }
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

const plain = { json: false as const, join: ',' }

t.test('nested and quoted claim paths; an absent claim gives no header', async (t) => {
  const claims = { sub: 'alice', realm_access: { roles: ['r1', 'r2'] }, 'https://example.com/roles': ['admin'] }
  const headers = identityHeaders(claims, {
    payloadHeader: null,
    maxBytes: 4096,
    headers: [
      { name: 'x-roles', claim: parseClaimPath('realm_access.roles', [], () => {})!, encoding: plain },
      { name: 'x-ns-roles', claim: parseClaimPath('"https://example.com/roles"', [], () => {})!, encoding: { json: true } },
      { name: 'x-email', claim: parseClaimPath('email', [], () => {})!, encoding: plain },
      { name: 'x-proto', claim: parseClaimPath('__proto__.polluted', [], () => {})!, encoding: plain },
    ],
  })
  t.same(headers, { 'x-roles': 'r1,r2', 'x-ns-roles': '["admin"]' })
})

t.test('the payload header is base64url JSON of the claims as verified', async (t) => {
  // As JSON.parse leaves a token with a duplicate member: the last one, which the gateway checked.
  const claims = JSON.parse('{"sub":"alice","roles":["a"],"sub":"bob","n":{"é":1}}') as Record<string, unknown>
  const headers = identityHeaders(claims, { headers: [], payloadHeader: 'x-jwt-payload', maxBytes: 4096 }) as Record<string, string>
  t.match(headers['x-jwt-payload'], /^[A-Za-z0-9_-]+$/)
  t.same(JSON.parse(Buffer.from(headers['x-jwt-payload']!, 'base64url').toString('utf8')), { sub: 'bob', roles: ['a'], n: { é: 1 } })
})

t.test('a value over the cap refuses the request; it is never cut or silently dropped', async (t) => {
  const groups: IdentityHeader = { name: 'x-groups', claim: ['groups'], encoding: plain }
  const fits = identityHeaders({ groups: ['a'.repeat(30), 'b'.repeat(31)] }, { headers: [groups], payloadHeader: null, maxBytes: 62 })
  t.same(fits, { 'x-groups': `${'a'.repeat(30)},${'b'.repeat(31)}` }, 'exactly the cap is sent')
  t.match(identityHeaders({ groups: ['a'.repeat(30), 'b'.repeat(32)] }, { headers: [groups], payloadHeader: null, maxBytes: 62 }), {
    status: 403,
    reason: 'identity_too_large',
    description: 'the identity header x-groups would be 63 bytes, more than the 62 this route sends',
  })
  t.match(
    identityHeaders({ name: 'é'.repeat(10) }, { headers: [{ name: 'x-name', claim: ['name'], encoding: plain }], payloadHeader: null, maxBytes: 59 }),
    { reason: 'identity_too_large' },
    'measured after percent-encoding (60 bytes)',
  )
  t.match(identityHeaders({ sub: 'x'.repeat(100) }, { headers: [], payloadHeader: 'x-jwt-payload', maxBytes: 100 }), {
    reason: 'identity_too_large',
    description: /x-jwt-payload/,
  })
})

t.test('a join that elements could not escape is a policy problem', async (t) => {
  const yaml = (join: string) => `version: 1
listen: { host: 127.0.0.1, port: 8080 }
issuers:
  idp: { issuer: https://idp.test, secret: "a-shared-secret-of-at-least-32-bytes!!", algorithms: [HS256], audiences: [api] }
upstreams:
  app: { url: "http://127.0.0.1:3001" }
identity_headers:
  x-user-groups: { claim: groups, join: ${JSON.stringify(join)} }
routes:
  - { path: /**, upstream: app, auth: { issuers: [idp] } }
`
  t.same(policyProblems(yaml(',')), [])
  t.same(policyProblems(yaml(', ')), [])
  for (const bad of ['%', 'a%b', '\t', '\u00e9']) t.match(policyProblems(yaml(bad)), [/join must be visible ASCII/], JSON.stringify(bad))
})
