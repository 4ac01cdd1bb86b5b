// End to end: what reaches the upstream, and what never does.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { bearer, gateway, get, issuer, policy, rawGet, rawRequest, upstream } from '../support/harness.js'

const ROUTES = `
  - path: /public/**
    upstream: orders
    auth: none
  - path: /admin/**
    upstream: orders
    auth:
      issuers: [idp]
      claims: { roles: { contains: admin } }
  - path: /api/**
    methods: [GET, POST, PUT, PATCH, DELETE]
    upstream: orders
    auth: { issuers: [idp] }
  - path: /tenant/*/health
    host: "*.example.test"
    upstream: orders
    auth: none
  - { path: /open/**, upstream: orders, auth: none, forward_token: false }
  - { path: /vhost/**, host: admin.example.test, upstream: orders, auth: { issuers: [idp] } }
  - { path: /vhost/**, upstream: orders, auth: none }
`

t.test('paths, headers and bodies', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, extra: 'strip_header_prefixes: [x-jwt-, x-auth-]' }))
  const user = idp.sign({ sub: 'alice', aud: 'orders-api' })
  const admin = idp.sign({ sub: 'root', aud: 'orders-api', roles: ['admin'] })

  t.test('dot segments are resolved before matching, so they cannot escape a public route', async (t) => {
    for (const target of ['/public/../admin/x', '/public/%2e%2e/admin/x', '/public/.%2E/admin/x', '/public/./../admin/x', '//public/%2E%2e//admin/x']) {
      const before = up.received.length
      const res = await rawGet(gw.port, target)
      t.equal(res.status, 401, `${target} is an /admin request`)
      t.equal(up.received.length, before, `${target} did not reach the upstream`)
    }
    const ok = await rawGet(gw.port, '/public/../admin/x?keep=%2F&a=b+c', { Authorization: `Bearer ${admin}` })
    t.equal(ok.status, 200)
    t.equal(up.received.at(-1)!.url, '/admin/x?keep=%2F&a=b+c', 'the upstream sees the normalized path and the query untouched')
  })

  t.test('the upstream sees exactly the normalized path', async (t) => {
    await rawGet(gw.port, '/public/%61bc//d/./e/')
    t.equal(up.received.at(-1)!.url, '/public/abc/d/e/')
  })

  t.test('encoded slashes, backslashes, NUL, bad UTF-8 and path parameters are refused with 400', async (t) => {
    const before = up.received.length
    for (const target of [
      '/public/a%2fb',
      '/public/a%5Cb',
      '/public/a\\b',
      '/public/%00',
      '/public/%C0%AE',
      '/public/x;jsessionid=1',
      '/public/%3B',
      '/public/%zz',
    ]) {
      const res = await rawGet(gw.port, target)
      t.equal(res.status, 400, target)
      t.equal(JSON.parse(res.body).error, 'bad_path', target)
    }
    t.equal(up.received.length, before, 'none reached the upstream')
  })

  t.test('a segment that reply-from refuses (..b) is a clean 400, not a crash', async (t) => {
    const before = up.received.length
    const res = await rawGet(gw.port, '/public/a/..b')
    t.equal(res.status, 400)
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(up.received.length, before)
  })

  t.test('absolute-form and asterisk-form targets are refused', async (t) => {
    const before = up.received.length
    t.equal((await rawGet(gw.port, 'http://127.0.0.1/public/x')).status, 400)
    t.equal((await rawRequest(gw.port, 'OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')).status, 400)
    t.equal(up.received.length, before)
  })

  t.test('a request no route matches gets 404 and never reaches an upstream', async (t) => {
    const before = up.received.length
    const res = await get(`${gw.url}/elsewhere`, bearer(admin))
    t.equal(res.status, 404)
    t.equal(res.json.error, 'no_route')
    t.equal((await get(`${gw.url}/api/x`, bearer(user), { method: 'OPTIONS' })).status, 404, 'a method the route does not list')
    t.equal((await get(`${gw.url}/tenant/a/health`)).status, 404, 'a host the route does not list')
    t.equal((await rawGet(gw.port, '/tenant/a/health', { Host: 'eu.example.test:8080' })).status, 200)
    t.equal((await rawGet(gw.port, '/tenant/a/health', { Host: 'example.test' })).status, 404, 'a wildcard needs a label before the domain')
    t.equal(up.received.length, before + 1)
  })

  t.test('a Host that is present but not valid is 400 bad_host, never the host-less route', async (t) => {
    const before = up.received.length
    for (const host of [
      'admin.example.test, evil',
      'admin.example.test,admin.example.test',
      'admin.example.test:abc',
      'admin.example.test:123456',
      'admin.example.test:65536',
      'admin.example.test:1:2',
      ':123456',
      ':8080',
      'admin.example.test evil',
      '',
    ]) {
      const res = await rawGet(gw.port, '/vhost/x', { Host: host })
      t.equal(res.status, 400, JSON.stringify(host))
      t.equal(JSON.parse(res.body).error, 'bad_host', JSON.stringify(host))
    }
    const twice = await rawRequest(gw.port, 'GET /vhost/x HTTP/1.1\r\nHost: other.test\r\nHost: admin.example.test\r\nConnection: close\r\n\r\n')
    t.equal(twice.status, 400, 'two Host headers')
    t.equal(JSON.parse(twice.body).error, 'bad_host')
    t.equal(up.received.length, before, 'none reached the upstream')
    // A valid Host: the host-restricted route decides, and the upstream is told that host.
    t.equal((await rawGet(gw.port, '/vhost/x', { Host: 'ADMIN.example.test.:8443' })).status, 401, 'the admin route, not the fallback')
    t.equal((await rawGet(gw.port, '/vhost/x', { Host: 'other.test:65535' })).status, 200)
    t.equal(up.received.at(-1)!.headers['x-forwarded-host'], 'other.test:65535', 'X-Forwarded-Host is the validated Host')
  })

  t.test('client-sent identity headers never reach the upstream, on public routes too', async (t) => {
    const spoof = [
      'X-User-Id: root',
      'x-user-id: root2',
      'X_User_Id: root3',
      'x-user-roles: admin',
      'X-Jwt-Claims: {}',
      'x-auth-request-user: root',
      'x_auth_user: root',
    ]
    const send = (target: string, extra: string[]) =>
      rawRequest(gw.port, [`GET ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...spoof, ...extra].join('\r\n') + '\r\n\r\n')
    t.equal((await send('/public/x', [])).status, 200)
    let seen = up.received.at(-1)!
    for (const name of Object.keys(seen.headers)) t.notMatch(name, /^x[-_](user|jwt|auth)/i, `${name} stripped on a public route`)
    t.equal((await send('/api/x', [`Authorization: Bearer ${user}`])).status, 200)
    seen = up.received.at(-1)!
    t.equal(seen.headers['x-user-id'], 'alice', 'set from the verified claim')
    t.equal(seen.rawHeaders.filter((h) => /^x[-_]user[-_]id$/i.test(h)).length, 1, 'exactly one copy')
    t.equal(seen.headers['x-user-roles'], undefined, 'an absent claim gives no header, never the client one')
  })

  t.test('auth: none with forward_token: false keeps the Authorization header from the upstream', async (t) => {
    const headers = { authorization: `Bearer ${admin}`, 'x-other': 'kept' }
    t.equal((await get(`${gw.url}/open/x`, headers)).status, 200)
    t.equal(up.received.at(-1)!.headers.authorization, undefined, 'removed')
    t.equal(up.received.at(-1)!.headers['x-other'], 'kept', 'the other headers go through')
    // forward_token: true, the default: passed on unchecked.
    t.equal((await get(`${gw.url}/public/x`, headers)).status, 200)
    t.equal(up.received.at(-1)!.headers.authorization, `Bearer ${admin}`)
  })

  t.test('claim values cannot inject header lines', async (t) => {
    const evil = idp.sign({ sub: 'alice\r\nx-admin: true', aud: 'orders-api', roles: ['a\nb', 'é'] })
    const res = await get(`${gw.url}/api/x`, bearer(evil))
    t.equal(res.status, 200)
    const seen = up.received.at(-1)!
    t.equal(seen.headers['x-user-id'], 'alice%0D%0Ax-admin: true')
    t.equal(seen.headers['x-admin'], undefined)
    t.equal(seen.headers['x-user-roles'], 'a%0Ab,%C3%A9')
  })

  t.test('bodies stream through for every method', async (t) => {
    const big = 'x'.repeat(2 * 1024 * 1024)
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const res = await fetch(`${gw.url}/api/upload`, { method, headers: { ...bearer(user), 'content-type': 'application/octet-stream' }, body: big })
      t.equal(res.status, 200, method)
      await res.arrayBuffer()
      t.equal(up.received.at(-1)!.body.length, big.length, `${method} body arrived whole`)
      t.equal(up.received.at(-1)!.method, method)
    }
    const json = await fetch(`${gw.url}/api/json`, {
      method: 'POST',
      headers: { ...bearer(user), 'content-type': 'application/json' },
      body: '{"not": valid json',
    })
    t.equal(json.status, 200, 'a body is never parsed')
    t.equal(up.received.at(-1)!.body, '{"not": valid json')
  })

  t.test('Expect, Keep-Alive and hop-by-hop request headers do not break forwarding', async (t) => {
    const res = await rawRequest(
      gw.port,
      [
        'POST /api/x HTTP/1.1',
        'Host: 127.0.0.1',
        `Authorization: Bearer ${user}`,
        'Keep-Alive: timeout=5',
        'Connection: close, x-drop-me',
        'X-Drop-Me: 1',
        'TE: trailers',
        'Proxy-Authorization: Basic abc',
        'Content-Length: 5',
        '',
        'hello',
      ].join('\r\n'),
    )
    t.equal(res.status, 200)
    const seen = up.received.at(-1)!
    t.equal(seen.body, 'hello')
    for (const h of ['keep-alive', 'x-drop-me', 'te', 'proxy-authorization']) t.equal(seen.headers[h], undefined, `${h} not forwarded`)
  })
})

t.test('upstream failures: 502 when unreachable, 504 on timeout, no retries', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const closed = createServer()
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
  const deadPort = (closed.address() as AddressInfo).port
  await new Promise<void>((r) => closed.close(() => r()))
  let hits = 0
  const flaky = createServer((_req, res) => {
    hits++
    res.writeHead(503).end('busy')
  })
  await new Promise<void>((r) => flaky.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => flaky.close(() => r())))
  const yaml = `version: 1
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  dead: { url: "http://127.0.0.1:${deadPort}" }
  slow: { url: "${up.url}", timeout: 300ms }
  flaky: { url: "http://127.0.0.1:${(flaky.address() as AddressInfo).port}/base/" }
routes:
  - { path: /dead/**, upstream: dead, auth: none }
  - { path: /slow/**, upstream: slow, auth: none }
  - { path: /flaky/**, upstream: flaky, auth: none }
`
  void idp
  const gw = await gateway(t, yaml)
  const dead = await get(`${gw.url}/dead/x`)
  t.equal(dead.status, 502)
  t.equal(dead.json.error, 'upstream_unreachable')
  up.delayMs = 1000
  const slow = await get(`${gw.url}/slow/x`)
  t.equal(slow.status, 504)
  t.equal(slow.json.error, 'upstream_timeout')
  const flakyRes = await get(`${gw.url}/flaky/x`)
  t.equal(flakyRes.status, 503, "the upstream's own 503 is passed through")
  t.equal(hits, 1, 'and not retried')
  t.match(
    gw.logs.lines.filter((l) => l.msg === 'request'),
    [{ status: 502, reason: 'upstream_unreachable' }, { status: 504, reason: 'upstream_timeout' }, { status: 503 }],
  )
  // Written through request.log, whose child logger is made only for such a line: it still
  // carries the request's id.
  t.match(
    gw.logs.lines.filter((l) => l.msg === 'upstream request failed').map((l) => l.request_id),
    [dead.json.request_id, slow.json.request_id],
  )
})
