// The status page's data from a single gateway (GET /status.json and friends), after real traffic:
// allowed requests, refusals for several reasons, an upstream failure.
import t from 'tap'
import { bearer, closedPort, gateway, get, issuer, policy, upstream } from '../support/harness.js'

const ROUTES = `  - { name: public, path: /public/**, upstream: orders, auth: none }
  - { name: admin, path: /admin/**, methods: [GET], upstream: orders, auth: { issuers: [idp], claims: { roles: { contains: admin } } } }
  - { name: api, path: /api/**, upstream: orders, auth: { issuers: [idp] } }
  - { name: broken, path: /broken/**, upstream: gone, auth: { issuers: [idp] } }
  - { name: unused, path: /unused, upstream: orders, auth: none }`

t.test('/status.json: overview, routes with live figures, issuers and keys, refusals, upstreams', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gone = await closedPort()
  const gw = await gateway(
    t,
    policy({ issuer: idp, upstream: up, routes: ROUTES }).replace('upstreams:\n', `upstreams:\n  gone: { url: "http://127.0.0.1:${gone}", timeout: 2s }\n`),
  )
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['user'] })
  const expired = idp.sign({ sub: 'bob', aud: 'orders-api' }, { expiresInSeconds: -60 })
  t.equal((await get(`${gw.url}/public/a`)).status, 200)
  t.equal((await get(`${gw.url}/api/orders?secret=query`, bearer(token))).status, 200)
  t.equal((await get(`${gw.url}/api/orders`)).status, 401)
  t.equal((await get(`${gw.url}/api/orders`, bearer(expired))).status, 401)
  t.equal((await get(`${gw.url}/admin/users`, bearer(token))).status, 403)
  // A verified token whose request failed upstream: its subject is personal data, not shown by default.
  t.equal((await get(`${gw.url}/broken/x`, bearer(token))).status, 502)
  t.equal((await get(`${gw.url}/nothing`)).status, 404)

  const status = (await get(`${gw.adminUrl}/status.json`)).json
  t.equal(status.overview.policy.hash, gw.gateway.policy.hash)
  t.equal(status.overview.ready, true)
  t.equal(status.overview.last_reload, null)
  t.equal(status.overview.workers, null, 'one process: no workers list')
  t.match(status.overview.version, /^\d+\.\d+\.\d+/)

  t.same(
    status.routes.map((r: any) => r.name),
    ['public', 'admin', 'api', 'broken', 'unused'],
    'routes in policy order',
  )
  const [pub, admin, api, broken, unused] = status.routes
  t.match(pub, { auth: 'none', requires: ['nothing: auth none'], mode: 'enforce', never_matched: false })
  t.match(pub.since_start, { requests: 1, allowed: 1, denied_total: 0, server_errors: 0 })
  t.match(api, { methods: null, path: '/api/**', upstream: { name: 'orders', url: up.url } })
  t.match(api.requires[0], /^a valid token from idp \(iss http:\/\/127\.0\.0\.1:\d+\/, aud orders-api\)$/)
  t.match(api.since_start, { requests: 3, allowed: 1, denied_total: 2, denied: { missing_token: 1, expired: 1 }, server_errors: 0 })
  t.match(api.last_5m, { requests: 3, allowed: 1, denied: { missing_token: 1, expired: 1 } }, 'a young process: the window is everything')
  t.type(api.since_start.p50_ms, 'number')
  t.ok(api.since_start.p99_ms >= api.since_start.p50_ms)
  t.match(admin, { methods: ['GET'], requires: [/a valid token from idp/, 'claim roles must contain "admin"'] })
  t.match(admin.since_start, { requests: 1, denied: { insufficient_claims: 1 } })
  t.match(broken.since_start, { requests: 1, allowed: 1, server_errors: 1 })
  t.match(unused, { never_matched: true, since_start: { requests: 0, p50_ms: null } })

  const [idpStatus] = status.issuers
  t.match(idpStatus, {
    name: 'idp',
    iss: idp.url,
    source: { kind: 'jwks', url: idp.jwksUri },
    ready: true,
    keys: [{ kid: idp.keys[0]!.kid, kty: 'RSA', algorithms: ['RS256'] }],
    last_fetch: { result: 'ok', http_status: 200, error: null },
    cooldown: { active: true },
    tokens: { accepted: 2, refused: { expired: 1, insufficient_claims: 1 } },
  })
  t.type(idpStatus.keys[0].first_seen, 'string')
  t.type(idpStatus.next_refresh, 'string')
  t.type(idpStatus.last_fetch.duration_ms, 'number')

  const reasons = status.refusals.map((r: any) => r.reason)
  t.same(reasons, ['no_route', 'upstream_unreachable', 'insufficient_claims', 'expired', 'missing_token'], 'newest first')
  const [noRoute, unreachable, insufficient, expiredRow] = status.refusals
  t.match(noRoute, { route: null, method: 'GET', path: '/nothing', status: 404, words: 'no route of the policy matches this request' })
  t.match(unreachable, { route: 'broken', status: 502, upstream: 'gone', issuer: 'idp', words: 'the upstream could not be reached' })
  t.notOk('subject' in unreachable, 'no subject unless show_subjects')
  t.match(insufficient, { route: 'admin', issuer: 'idp', status: 403 })
  t.match(expiredRow, { route: 'api', issuer: 'idp', words: 'the token has expired' })
  t.notOk('subject' in expiredRow, 'no subject unless show_subjects')
  const text = JSON.stringify(status)
  for (const secret of [token, expired, 'secret=query', 'alice', 'bob']) t.notOk(text.includes(secret), `never ${secret.slice(0, 12)}…`)

  // A refusal on the page is found in the log by its request id.
  const line = gw.logs.lines.find((l) => l.request_id === expiredRow.request_id)
  t.match(line, { reason: 'expired', route: 'api', status: 401 })

  const byName = Object.fromEntries(status.upstreams.map((u: any) => [u.name, u]))
  t.match(byName.gone, { health: null, recent_errors: [{ reason: 'upstream_unreachable', route: 'broken' }] })
  t.match(byName.orders, { connections: { open: 1, in_use: 0, waiting: 0 }, recent_errors: [] })
  t.equal(status.revocation, null)

  const filtered = (await get(`${gw.adminUrl}/status/refusals.json?reason=expired`)).json
  t.same(
    filtered.refusals.map((r: any) => r.reason),
    ['expired'],
  )
  t.equal(filtered.kept, 100, 'admin.status.recent_refusals defaults to 100')
})

t.test('the ring keeps the newest admin.status.recent_refusals, with subjects when asked', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gone = await closedPort()
  const gw = await gateway(
    t,
    policy({
      issuer: idp,
      upstream: up,
      routes: `  - { path: /api/**, upstream: orders, auth: { issuers: [idp], claims: { roles: { contains: admin } } }, mode: report }
  - { path: /x/**, upstream: orders, auth: { issuers: [idp] } }
  - { path: /y/**, upstream: gone, auth: { issuers: [idp] } }`,
    })
      .replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 0, status: { recent_refusals: 3, show_subjects: true } }')
      .replace('upstreams:\n', `upstreams:\n  gone: { url: "http://127.0.0.1:${gone}", timeout: 2s }\n`),
  )
  for (let i = 0; i < 5; i++) await get(`${gw.url}/x/${i}`)
  await get(`${gw.url}/x/expired`, bearer(idp.sign({ sub: 'carol', aud: 'nope' })))
  const status = (await get(`${gw.adminUrl}/status.json`)).json
  t.same(
    status.refusals.map((r: any) => r.path),
    ['/x/expired', '/x/4', '/x/3'],
  )
  t.equal(status.refusals_kept, 3)
  // wrong_audience refuses a verified token before any identity is taken from it: no subject.
  t.notOk(status.refusals[0].subject)

  // A verified token whose request failed upstream: its subject, since the policy asks for it.
  t.equal((await get(`${gw.url}/y/z`, bearer(idp.sign({ sub: 'erin', aud: 'orders-api' })))).status, 502)
  t.match((await get(`${gw.adminUrl}/status.json`)).json.refusals[0], { path: '/y/z', reason: 'upstream_unreachable', subject: 'erin', issuer: 'idp' })

  // mode: report: forwarded, and what enforcing would have refused is shown.
  await get(`${gw.url}/api/a`, bearer(idp.sign({ sub: 'dave', aud: 'orders-api' })))
  const api = (await get(`${gw.adminUrl}/status.json`)).json.routes[0]
  t.equal(up.received.length, 1, 'the report route forwarded it')
  t.match(api, { mode: 'report', since_start: { requests: 1, allowed: 1, would_deny: { insufficient_claims: 1 } } })
})
