// End to end: a real JWKS server, a real echo upstream, the gateway from a YAML file.
// Each security rule here has a test that fails if the rule is removed.
import t from 'tap'
import { createHmac, createPublicKey, generateKeyPairSync } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import { bearer, gateway, get, issuer, policy, rawGet, upstream } from '../support/harness.js'

const ROUTES = `
  - path: /public/**
    upstream: orders
    auth: none
  - path: /admin/**
    upstream: orders
    auth:
      issuers: [idp]
      claims: { roles: { contains: admin } }
  - path: /write/**
    upstream: orders
    auth: { issuers: [idp], scopes: ["orders:write"] }
  - path: /api/**
    upstream: orders
    auth: { issuers: [idp] }
`

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

t.test('verification rules', async (t) => {
  const idp = await issuer(t, [
    { alg: 'RS256', kid: 'rsa-1' },
    { alg: 'ES256', kid: 'ec-1' },
    { alg: 'PS256', kid: 'ps-1' },
    { alg: 'EdDSA', kid: 'ed-1' },
    { alg: 'ES384', kid: 'ec384-1' },
  ])
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  const api = `${gw.url}/api/orders/7`
  const good = { sub: 'alice', aud: 'orders-api', roles: ['reader', 'writer'] }

  t.test('a valid RS256 token reaches the upstream with identity headers', async (t) => {
    const token = idp.sign(good)
    const res = await get(api + '?q=1', bearer(token))
    t.equal(res.status, 200)
    const seen = up.received.at(-1)!
    t.equal(seen.url, '/api/orders/7?q=1')
    t.equal(seen.headers['x-user-id'], 'alice')
    t.equal(seen.headers['x-user-roles'], 'reader,writer')
    t.equal(seen.headers.authorization, undefined, 'the token is not forwarded by default (forward_token: false)')
    t.match(seen.headers['x-request-id'], /^[0-9a-f-]{36}$/)
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
    t.equal(seen.headers['x-forwarded-proto'], 'http')
    t.match(seen.headers['x-forwarded-host'], /^127\.0\.0\.1:\d+$/)
  })

  t.test('every allowed key type verifies: ES256, PS256, EdDSA, ES384', async (t) => {
    for (const key of idp.keys.slice(1)) {
      const res = await get(api, bearer(idp.sign(good, { key })))
      t.equal(res.status, 200, key.alg)
    }
  })

  t.test('the Bearer scheme is case-insensitive', async (t) => {
    const token = idp.sign(good)
    t.equal((await get(api, { authorization: `bearer ${token}` })).status, 200)
    t.equal((await get(api, { authorization: `BEARER ${token}` })).status, 200)
  })

  t.test('no token: 401 with a bare challenge and a JSON body', async (t) => {
    const before = up.received.length
    const res = await get(api, { 'x-request-id': 'trace-123' })
    t.equal(res.status, 401)
    t.equal(res.headers.get('www-authenticate'), 'Bearer realm="jwtgate"')
    t.same(res.json, { error: 'missing_token', message: 'a bearer token is required', request_id: 'trace-123' })
    t.equal(up.received.length, before, 'nothing reached the upstream')
  })

  t.test('a Basic credential where a Bearer token is read is a malformed credential', async (t) => {
    const res = await get(api, { authorization: 'Basic YWxpY2U6c2VjcmV0' })
    t.equal(res.status, 401)
    t.equal(
      res.headers.get('www-authenticate'),
      'Bearer realm="jwtgate", error="invalid_token", error_description="the Authorization header does not carry a Bearer token"',
    )
  })

  t.test('two Authorization headers are refused (RFC 6750 §2)', async (t) => {
    const token = idp.sign(good)
    const res = await rawGet(gw.port, '/api/orders/7', { Authorization: `Bearer ${token}`, authorization: 'Bearer other' })
    t.equal(res.status, 400)
    t.match(res.headers['www-authenticate'], /error="invalid_request"/)
    t.equal(JSON.parse(res.body).error, 'multiple_tokens')
  })

  const rejects: Array<[string, () => string, string]> = [
    ['an expired token', () => idp.sign({ ...good, exp: Math.floor(Date.now() / 1000) - 60 }), 'expired'],
    ['a token not valid yet (nbf)', () => idp.sign({ ...good, nbf: Math.floor(Date.now() / 1000) + 600 }), 'not_yet_valid'],
    ['a token issued in the future (iat)', () => idp.sign({ ...good, iat: Math.floor(Date.now() / 1000) + 600 }), 'issued_in_future'],
    ['a token without exp', () => idp.sign({ ...good, exp: undefined }), 'invalid_claims'],
    ['a string exp', () => idp.sign({ ...good, exp: String(Math.floor(Date.now() / 1000) + 600) }), 'invalid_claims'],
    ['a string iat', () => idp.sign({ ...good, iat: 'yesterday' }), 'invalid_claims'],
    ['a wrong audience', () => idp.sign({ ...good, aud: 'billing-api' }), 'wrong_audience'],
    ['no audience', () => idp.sign({ ...good, aud: undefined }), 'wrong_audience'],
    ['an audience list without ours', () => idp.sign({ ...good, aud: ['a', 'b'] }), 'wrong_audience'],
    ['a wrong issuer', () => idp.sign({ ...good, iss: 'https://evil.example/' }), 'wrong_issuer'],
    ['no issuer', () => idp.sign({ ...good, iss: undefined }), 'wrong_issuer'],
    ['an issuer differing by a trailing slash', () => idp.sign({ ...good, iss: idp.url.slice(0, -1) }), 'wrong_issuer'],
    ['an unknown crit header', () => idp.sign(good, { header: { crit: ['exp-ext'], 'exp-ext': 1 } }), 'invalid_claims'],
    [
      'a tampered payload',
      () => {
        const [h, , s] = idp.sign(good).split('.')
        return `${h}.${b64url({ ...good, iss: idp.url, exp: 9999999999, roles: ['admin'] })}.${s}`
      },
      'bad_signature',
    ],
    ['garbage', () => 'not.a.jwt', 'malformed'],
    ['alg none', () => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ ...good, iss: idp.url, exp: 9999999999 })}.`, 'bad_algorithm'],
    [
      'alg RS512, not in the allow-list',
      () => {
        const k = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' })
        return createSigner({ key: k as string, algorithm: 'RS512', kid: 'rsa-1' })({ ...good, iss: idp.url, exp: 9999999999 })
      },
      'bad_algorithm',
    ],
  ]
  for (const [what, token, reason] of rejects) {
    t.test(`rejects ${what}`, async (t) => {
      const before = up.received.length
      const res = await get(api, bearer(token()))
      t.equal(res.status, 401)
      t.equal(res.json.error, reason)
      t.match(res.headers.get('www-authenticate'), /^Bearer realm="jwtgate", error="invalid_token", error_description="[^"]+"$/)
      t.equal(up.received.length, before, 'nothing reached the upstream')
    })
  }

  t.test('rejects HS256 signed with the RSA public key (alg confusion)', async (t) => {
    const publicPem = createPublicKey(idp.keys[0]!.privateKey).export({ type: 'spki', format: 'pem' })
    const header = b64url({ alg: 'HS256', kid: 'rsa-1', typ: 'JWT' })
    const payload = b64url({ ...good, iss: idp.url, exp: 9999999999 })
    for (const secret of [JSON.stringify(idp.keys[0]!.publicJwk), String(publicPem)]) {
      const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url')
      const res = await get(api, bearer(`${header}.${payload}.${sig}`))
      t.equal(res.status, 401)
      t.equal(res.json.error, 'bad_algorithm')
    }
  })

  t.test('never trusts an embedded jwk, jku, x5u or x5c header', async (t) => {
    const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const attackerIdp = await issuer(t)
    const sign = createSigner({
      key: attacker.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      algorithm: 'RS256',
      kid: 'rsa-1',
      header: { jwk: attacker.publicKey.export({ format: 'jwk' }), jku: attackerIdp.jwksUri, x5u: attackerIdp.jwksUri } as never,
    })
    const res = await get(api, bearer(sign({ ...good, iss: idp.url, exp: 9999999999 })))
    t.equal(res.status, 401)
    t.equal(res.json.error, 'bad_signature')
    t.equal(attackerIdp.fetches, 0, 'the jku/x5u URL was never fetched')
  })

  t.test('a token whose kid has the wrong key type is refused', async (t) => {
    const res = await get(api, bearer(idp.sign(good, { key: { ...idp.keys[1]!, kid: 'rsa-1' } })))
    t.equal(res.status, 401)
  })

  t.test('an oversized token is refused before decoding', async (t) => {
    const res = await get(api, bearer(idp.sign({ ...good, pad: 'x'.repeat(13_000) })))
    t.equal(res.status, 401)
    t.equal(res.json.error, 'token_too_large')
  })

  t.test('403 insufficient_scope when a required claim is missing', async (t) => {
    const res = await get(`${gw.url}/admin/users`, bearer(idp.sign(good)))
    t.equal(res.status, 403)
    t.equal(res.json.error, 'insufficient_claims')
    t.match(res.headers.get('www-authenticate'), /^Bearer realm="jwtgate", error="insufficient_scope"/)
    t.equal((await get(`${gw.url}/admin/users`, bearer(idp.sign({ ...good, roles: ['admin'] })))).status, 200)
    t.equal((await get(`${gw.url}/admin/users`, bearer(idp.sign({ ...good, roles: 'admin' })))).status, 403, 'contains needs an array')
    const reader = idp.sign({ ...good, jti: 'same-token' })
    t.equal((await get(api, bearer(reader))).status, 200)
    t.equal((await get(`${gw.url}/admin/users`, bearer(reader))).status, 403, 'the same (cached) token is authorized per route')
  })

  t.test('scopes come from scope (space separated) or scp (array or string)', async (t) => {
    const url = `${gw.url}/write/orders`
    const denied = await get(url, bearer(idp.sign({ ...good, scope: 'orders:read' })))
    t.equal(denied.status, 403)
    t.match(denied.headers.get('www-authenticate'), /scope="orders:write"/)
    t.equal((await get(url, bearer(idp.sign({ ...good, scope: 'orders:read orders:write' })))).status, 200)
    t.equal((await get(url, bearer(idp.sign({ ...good, scp: ['orders:write'] })))).status, 200)
    t.equal((await get(url, bearer(idp.sign({ ...good, scp: 'orders:write profile' })))).status, 200)
    t.equal((await get(url, bearer(idp.sign({ ...good, scope: 'orders:writer' })))).status, 403, 'no prefix matching')
  })

  t.test('only the canonical base64url spelling of each part verifies', async (t) => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    for (const key of [idp.keys[0]!, idp.keys[1]!]) {
      const token = idp.sign({ ...good, n: key.alg }, { key })
      const signature = token.split('.')[2]!
      // RS256 (256 bytes) and ES256 (64 bytes) signatures end with 4 unused bits: 16 spellings of the last character decode alike.
      t.equal(signature.length % 4, 2, `${key.alg}: the last character carries 2 bits`)
      const last = alphabet.indexOf(signature.at(-1)!)
      const before = up.received.length
      const spellings = Array.from({ length: 16 }, (_, low) => alphabet[(last & ~0b1111) | low]!)
      t.equal(spellings.length, new Set(spellings).size)
      for (const c of spellings) {
        const res = await get(api, bearer(token.slice(0, -1) + c))
        if (c === signature.at(-1)) t.equal(res.status, 200, `${key.alg}: the canonical spelling`)
        else t.same([res.status, res.json.error], [401, 'malformed'], `${key.alg}: last character ${c} instead of ${signature.at(-1)}`)
      }
      t.equal(up.received.length, before + 1, 'only the canonical token reached the upstream')
    }
    const [h, p, sig] = idp.sign(good).split('.') as [string, string, string]
    const padded = (part: string) => part + '='.repeat((4 - (part.length % 4)) % 4)
    for (const [what, token] of [
      ['padding on the signature', `${h}.${p}.${padded(sig)}`],
      ['a signature of a length no encoding has (4n + 1)', `${h}.${p}.${sig}AAA`],
      ['a header whose last character has unused bits set', `${h.slice(0, -1)}${alphabet[alphabet.indexOf(h.at(-1)!) | 1]}.${p}.${sig}`],
      ['a payload whose last character has unused bits set', `${h}.${p.slice(0, -1)}${alphabet[alphabet.indexOf(p.at(-1)!) | 1]}.${sig}`],
    ] as const) {
      if (what.includes('unused') && token === `${h}.${p}.${sig}`) continue // that part happens to end on a whole group
      const res = await get(api, bearer(token))
      t.same([res.status, res.json.error], [401, 'malformed'], what)
    }
  })

  t.test('the access log has one line per request, and never the token', async (t) => {
    const token = idp.sign(good)
    await get(`${api}?access_token=secret-in-query`, { ...bearer(token), cookie: 'session=cookie-secret' })
    const line = gw.logs.lines.filter((l) => l.msg === 'request').at(-1)!
    t.match(line, { method: 'GET', path: '/api/orders/7', route: '/api/**', status: 200, sub: 'alice', issuer: 'idp', upstream: 'orders' })
    t.equal(typeof line.ms, 'number')
    // The shape pino gives every other line, though the access line is written without it.
    t.match(line, { level: 30, service: 'jwtgate', time: Number, request_id: String })
    t.same(Object.keys(line).slice(0, 4), ['level', 'time', 'service', 'request_id'])
    t.equal(Object.keys(line).at(-1), 'msg')
    t.notOk(gw.logs.text.includes(token.split('.')[2]!), 'no token in the logs')
    t.notOk(gw.logs.text.includes('cookie-secret'), 'no cookie in the logs')
    t.notOk(gw.logs.text.includes('secret-in-query'), 'no query string in the logs')
    const denied = await get(api)
    t.equal(denied.status, 401)
    t.match(gw.logs.lines.filter((l) => l.msg === 'request').at(-1), { status: 401, reason: 'missing_token' })
  })
})

t.test('keys are bound to their issuer', async (t) => {
  const idp = await issuer(t)
  const other = await issuer(t)
  const up = await upstream(t)
  const yaml = policy({
    issuer: idp,
    upstream: up,
    routes: `
  - path: /api/**
    upstream: orders
    auth: { issuers: [idp] }
  - path: /both/**
    upstream: orders
    auth: { issuers: [idp, other] }
`,
    issuerExtra: `  other:
    issuer: ${other.url}
    jwks_uri: ${other.jwksUri}
    audiences: [orders-api]
    algorithms: [RS256]`,
  })
  const gw = await gateway(t, yaml)
  const otherFetches = other.fetches
  const token = other.sign({ sub: 'mallory', aud: 'orders-api' })
  const res = await get(`${gw.url}/api/x`, bearer(token))
  t.equal(res.status, 401, "another configured issuer's token is refused where only idp is allowed")
  t.equal(res.json.error, 'wrong_issuer')
  t.equal(other.fetches, otherFetches, 'refused before any key lookup')
  t.equal((await get(`${gw.url}/both/x`, bearer(token))).status, 200)
  const again = await get(`${gw.url}/api/x`, bearer(token))
  t.equal(again.status, 401, 'a token verified (and cached) on a route that allows its issuer is still refused where it does not')
  t.equal(again.json.error, 'wrong_issuer')

  // A token claiming idp but signed by other's key, with other's kid: idp's keys are the only ones tried.
  const forged = other.sign({ sub: 'mallory', aud: 'orders-api', iss: idp.url })
  const forgedRes = await get(`${gw.url}/both/x`, bearer(forged))
  // idp publishes no such kid: within its cool-down it is not known yet (503), never other's key.
  t.same([forgedRes.status, forgedRes.json.error], [503, 'keys_unavailable'])
})

t.test('a shared-secret issuer (HS256) from an environment variable', async (t) => {
  const up = await upstream(t)
  const secret = 'a-test-secret-that-is-at-least-32-bytes-long'
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
issuers:
  internal:
    issuer: internal-auth
    secret: \${TEST_JWT_SECRET}
    audiences: [orders-api]
    algorithms: [HS256]
upstreams:
  orders: { url: "${up.url}" }
identity_headers: { x-user-id: sub }
routes:
  - path: /api/**
    upstream: orders
    auth: { issuers: [internal] }
    forward_token: false
`,
    { TEST_JWT_SECRET: secret },
  )
  const now = Math.floor(Date.now() / 1000)
  const sign = (key: string, alg = 'HS256') =>
    createSigner({ key, algorithm: alg as 'HS256', noTimestamp: true })({ iss: 'internal-auth', aud: 'orders-api', sub: 'svc', exp: now + 60 })
  const res = await get(`${gw.url}/api/x`, bearer(sign(secret)))
  t.equal(res.status, 200)
  t.equal(up.received.at(-1)!.headers['x-user-id'], 'svc')
  t.equal(up.received.at(-1)!.headers.authorization, undefined, 'forward_token: false strips the token')
  t.equal((await get(`${gw.url}/api/x`, bearer(sign('another-secret-that-is-also-32-bytes-long!')))).status, 401)
  t.equal((await get(`${gw.url}/api/x`, bearer(sign(secret, 'HS512')))).json.error, 'bad_algorithm')
})
