// Authorization depth and identity output end to end: requirement trees, optional tokens,
// token age and type, report mode, per-route identity headers and the payload header. Real
// issuers, a real echo upstream, the gateway from a YAML file; every assertion checks what the
// client got and what reached the upstream.
import t from 'tap'
import { bearer, gateway, get, issuer, policy, upstream } from '../support/harness.js'

type TT = Parameters<Parameters<typeof t.test>[0]>[0]

t.test('authorization and identity output', async (t) => {
  const idp = await issuer(t)
  const partner = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(
    t,
    policy({
      issuer: idp,
      upstream: up,
      issuerExtra: `  partner:
    issuer: ${partner.url}
    jwks_uri: ${partner.jwksUri}
    audiences: [partner-api]
    algorithms: [RS256]`,
      extra: 'identity_header_max_bytes: 512',
      routes: `
  - path: /public/**
    upstream: orders
    auth: none
  - path: /any/**
    upstream: orders
    auth:
      any:
        - { issuers: [idp], claims: { roles: { contains: admin } }, scopes: ["orders:admin"] }
        - { issuers: [partner] }
  - path: /all/**
    upstream: orders
    auth:
      all:
        - { issuers: [idp], scopes: ["orders:read"] }
        - { issuers: [idp], claims: { email: { matches: '[^@]+@example\\.com' } } }
  - path: /optional/**
    upstream: orders
    auth: { optional: true, issuers: [idp] }
  - path: /fresh/**
    upstream: orders
    auth: { issuers: [idp], typ: at+jwt, require_claims: [jti], max_age: 60s }
  - path: /aud/**
    upstream: orders
    auth: { issuers: [idp], audiences: [admin-api] }
  - path: /report/**
    upstream: orders
    mode: report
    auth: { issuers: [idp], claims: { roles: { contains: admin } } }
  - path: /payload/**
    upstream: orders
    forward_payload_header: x-token-claims
    identity_headers:
      x-user-id: app.id
      x-user-email: email
    auth: { issuers: [idp] }
  - path: /big/**
    upstream: orders
    identity_headers: { x-groups: groups }
    auth: { issuers: [idp] }
`,
    }),
  )
  const good = { sub: 'alice', aud: 'orders-api' }
  const received = () => up.received.length
  /** A request that must be refused: the status and reason, and nothing forwarded. */
  async function refused(t: TT, path: string, headers: Record<string, string>, status: number, reason: string) {
    const before = received()
    const res = await get(`${gw.url}${path}`, headers)
    t.equal(res.status, status, `${path}: status`)
    t.equal(res.json.error, reason, `${path}: reason`)
    t.equal(received(), before, `${path}: nothing reached the upstream`)
    return res
  }
  async function forwarded(t: TT, path: string, headers: Record<string, string> = {}) {
    const before = received()
    const res = await get(`${gw.url}${path}`, headers)
    t.equal(res.status, 200, `${path}: forwarded${res.status === 200 ? '' : ` (${JSON.stringify(res.json)})`}`)
    t.equal(received(), before + 1, `${path}: reached the upstream once`)
    return up.received.at(-1)!.headers
  }

  t.test('any: one alternative is enough', async (t) => {
    const admin = await forwarded(t, '/any/x', bearer(idp.sign({ ...good, roles: ['admin'], scope: 'orders:admin' })))
    t.equal(admin['x-user-id'], 'alice')
    const other = await forwarded(t, '/any/x', bearer(partner.sign({ sub: 'p1', aud: 'partner-api' })))
    t.equal(other['x-user-id'], 'p1')
  })

  t.test('any: an idp token lacking the role hears what it lacks (403), not that partner wanted another issuer', async (t) => {
    const res = await refused(t, '/any/x', bearer(idp.sign({ ...good, roles: ['reader'], scope: 'orders:admin' })), 403, 'insufficient_claims')
    t.equal(
      res.headers.get('www-authenticate'),
      'Bearer realm="jwtgate", error="insufficient_scope", error_description="the token lacks the required claim roles (it must contain admin)", scope="orders:admin"',
    )
    // The value wanted is said; the token's own claims (what explain shows as found) are not.
    t.same(Object.keys(res.json), ['error', 'message', 'request_id'])
    t.notMatch(JSON.stringify(res.json) + res.headers.get('www-authenticate'), 'reader')
    const noToken = await refused(t, '/any/x', {}, 401, 'missing_token')
    t.equal(noToken.headers.get('www-authenticate'), 'Bearer realm="jwtgate"', 'a missing token stays a bare challenge')
    await refused(t, '/any/x', bearer(partner.sign({ sub: 'p1', aud: 'orders-api' })), 401, 'wrong_audience')
  })

  t.test('all: every part, and a 403 names every scope of the route', async (t) => {
    await forwarded(t, '/all/x', bearer(idp.sign({ ...good, scope: 'orders:read', email: 'alice@example.com' })))
    const noScope = await refused(t, '/all/x', bearer(idp.sign({ ...good, email: 'alice@example.com' })), 403, 'insufficient_claims')
    t.match(noScope.headers.get('www-authenticate'), /error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:read"$/)
    const badEmail = await refused(
      t,
      '/all/x',
      bearer(idp.sign({ ...good, scope: 'orders:read', email: 'alice@example.com.evil.net' })),
      403,
      'insufficient_claims',
    )
    t.match(
      badEmail.headers.get('www-authenticate'),
      /lacks the required claim email \(it must match .+@example.com as a whole\)", scope="orders:read"$/,
      'matches is anchored; the scope is still named',
    )
    await refused(t, '/all/x', bearer(partner.sign({ sub: 'p1', aud: 'partner-api' })), 401, 'wrong_issuer')
  })

  t.test('optional: no token passes anonymously; a token that is sent must be valid', async (t) => {
    const anonymous = await forwarded(t, '/optional/x', { 'x-user-id': 'forged', 'x-token-claims': 'forged' })
    t.notOk('x-user-id' in anonymous, "no identity, and the client's copy is gone")
    t.notOk('x-token-claims' in anonymous)
    await refused(t, '/optional/x', { authorization: 'Basic YWxpY2U6c2VjcmV0' }, 401, 'malformed')
    const known = await forwarded(t, '/optional/x', bearer(idp.sign({ ...good, roles: ['r'] })))
    t.equal(known['x-user-id'], 'alice')
    t.equal(known['x-user-roles'], 'r')
    await refused(t, '/optional/x', bearer(idp.sign({ ...good, exp: Math.floor(Date.now() / 1000) - 60 })), 401, 'expired')
    await refused(t, '/optional/x', bearer(partner.sign({ sub: 'p1', aud: 'orders-api' })), 401, 'wrong_issuer')
    await refused(t, '/optional/x', { authorization: 'Bearer not-a-jwt' }, 401, 'malformed')
    await refused(t, '/optional/x', bearer('a'.repeat(17_000)), 401, 'token_too_large')
  })

  t.test('typ, require_claims and max_age', async (t) => {
    const at = { header: { typ: 'at+jwt' } }
    await forwarded(t, '/fresh/x', bearer(idp.sign({ ...good, jti: 'j1' }, at)))
    await forwarded(t, '/fresh/x', bearer(idp.sign({ ...good, jti: 'j2' }, { header: { typ: 'application/AT+JWT' } })))
    await refused(t, '/fresh/x', bearer(idp.sign({ ...good, jti: 'j3' })), 401, 'wrong_type')
    await refused(t, '/fresh/x', bearer(idp.sign({ ...good, jti: 'j4' }, { header: { typ: undefined } })), 401, 'wrong_type')
    await refused(t, '/fresh/x', bearer(idp.sign(good, at)), 401, 'invalid_claims')
    await refused(t, '/fresh/x', bearer(idp.sign({ ...good, jti: 'j5', iat: Math.floor(Date.now() / 1000) - 120 }, at)), 401, 'expired')
    const noIat = await refused(t, '/fresh/x', bearer(idp.sign({ ...good, jti: 'j6', iat: undefined }, at)), 401, 'invalid_claims')
    t.equal(noIat.json.message, 'the token has no iat claim, which max_age needs')
  })

  t.test("audiences on the route replace the issuer's", async (t) => {
    await forwarded(t, '/aud/x', bearer(idp.sign({ ...good, aud: 'admin-api' })))
    await refused(t, '/aud/x', bearer(idp.sign(good)), 401, 'wrong_audience')
  })

  t.test("the verified-token cache keeps each route's requirement and the token type", async (t) => {
    const reader = idp.sign({ ...good, roles: ['reader'], jti: 'c1' }, { header: { typ: 'at+jwt' } })
    await forwarded(t, '/payload/x', bearer(reader))
    await refused(t, '/any/x', bearer(reader), 403, 'insufficient_claims')
    await forwarded(t, '/fresh/x', bearer(reader))
    await refused(t, '/aud/x', bearer(reader), 401, 'wrong_audience')
    const plain = idp.sign({ ...good, jti: 'c2' })
    await forwarded(t, '/payload/x', bearer(plain))
    await refused(t, '/fresh/x', bearer(plain), 401, 'wrong_type')
  })

  t.test("per-route identity headers override and add to the policy's; the payload header decodes to the claims", async (t) => {
    const claims = { ...good, app: { id: 'u-42' }, email: 'alice@example.com', roles: ['a', 'b'] }
    const seen = await forwarded(t, '/payload/x', { ...bearer(idp.sign(claims)), 'x-token-claims': 'forged', 'x-user-email': 'forged' })
    t.equal(seen['x-user-id'], 'u-42', 'overridden')
    t.equal(seen['x-user-email'], 'alice@example.com', 'added')
    t.equal(seen['x-user-roles'], 'a,b', 'kept from the policy')
    const payload = JSON.parse(Buffer.from(String(seen['x-token-claims']), 'base64url').toString('utf8')) as Record<string, unknown>
    t.match(payload, { ...claims, iss: idp.url })
    t.type(payload.exp, 'number')
  })

  t.test('every route strips every identity header name any route sets', async (t) => {
    const seen = await forwarded(t, '/public/x', { 'x-token-claims': 'forged', 'X-User-Email': 'forged', x_groups: 'forged', 'x-other': 'kept' })
    t.notOk('x-token-claims' in seen)
    t.notOk('x-user-email' in seen)
    t.notOk('x_groups' in seen)
    t.equal(seen['x-other'], 'kept')
    const elsewhere = await forwarded(t, '/aud/x', { ...bearer(idp.sign({ ...good, aud: 'admin-api', email: 'alice@example.com' })), 'x-user-email': 'forged' })
    t.notOk('x-user-email' in elsewhere, 'a route that does not set it still removes it')
  })

  t.test('an identity value over identity_header_max_bytes refuses the request', async (t) => {
    const groups = Array.from({ length: 60 }, (_, i) => `group-${i}`)
    await forwarded(t, '/big/x', bearer(idp.sign({ ...good, groups: groups.slice(0, 10) })))
    const res = await refused(t, '/big/x', bearer(idp.sign({ ...good, groups })), 403, 'identity_too_large')
    t.equal(res.headers.get('www-authenticate'), `Bearer realm="jwtgate", error_description="${res.json.message}"`, 'not an insufficient_scope')
    t.match(res.json.message, /x-groups would be \d+ bytes, more than the 512/)
  })

  t.test('report mode: everything is forwarded, the decision it would have made is logged and counted', async (t) => {
    const expired = await forwarded(t, '/report/x', {
      ...bearer(idp.sign({ ...good, roles: ['admin'], exp: Math.floor(Date.now() / 1000) - 60 })),
      'x-user-id': 'forged',
    })
    t.notOk('x-user-id' in expired, "a bad token gives no identity, and the client's copy is still removed")
    const noToken = await forwarded(t, '/report/x')
    t.notOk('x-user-id' in noToken)
    const reader = await forwarded(t, '/report/x', bearer(idp.sign({ ...good, roles: ['reader'] })))
    t.equal(reader['x-user-id'], 'alice', 'a verified token lacking a claim still identifies its caller')
    const admin = await forwarded(t, '/report/x', bearer(idp.sign({ ...good, roles: ['admin'] })))
    t.equal(admin['x-user-id'], 'alice')

    const metrics = (await get(`${gw.adminUrl}/metrics`)).json as string
    const route = '/report/\\*\\*'
    t.match(metrics, new RegExp(`jwtgate_report_decisions_total\\{route="${route}",decision="deny",reason="expired"\\} 1`))
    t.match(metrics, new RegExp(`jwtgate_report_decisions_total\\{route="${route}",decision="deny",reason="missing_token"\\} 1`))
    t.match(metrics, new RegExp(`jwtgate_report_decisions_total\\{route="${route}",decision="deny",reason="insufficient_claims"\\} 1`))
    t.match(metrics, new RegExp(`jwtgate_report_decisions_total\\{route="${route}",decision="allow",reason="none"\\} 1`))
    t.notMatch(metrics, new RegExp(`jwtgate_auth_failures_total\\{route="${route}"`), 'nothing was refused')

    const lines = gw.logs.lines.filter((l) => l.msg === 'request' && l.path === '/report/x')
    t.same(
      lines.map((l) => [l.status, l.report, l.report_status, l.report_reason, l.reason]),
      [
        [200, 'deny', 401, 'expired', undefined],
        [200, 'deny', 401, 'missing_token', undefined],
        [200, 'deny', 403, 'insufficient_claims', undefined],
        [200, 'allow', undefined, undefined, undefined],
      ],
    )
  })
})
