// `jwtgate explain` as a child process: what the gateway would do with one request, and why.
import t from 'tap'
import { jwtgate as run } from '../support/cli.js'
import { generateDevKey, signToken } from '../../src/devkit/dev_issuer.js'
import { issuer, policy, tempFile, upstream } from '../support/harness.js'

const ROUTES = `
  - { path: /public/**, upstream: orders, auth: none }
  - path: /admin/**
    methods: [GET, POST]
    upstream: orders
    auth: { issuers: [idp], claims: { roles: { contains: admin } } }
  - { path: /api/**, methods: [POST], upstream: orders, auth: { issuers: [idp], scopes: ["orders:write"] } }
  - { path: /api/**, host: internal.example.com, upstream: orders, auth: none }
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] }, forward_token: false }
  - path: /tree/**
    upstream: orders
    mode: report
    auth:
      any:
        - { issuers: [idp], audiences: [admin-api], claims: { email: { matches: '.+@example\\.com' } }, typ: at+jwt }
        - all: [ { issuers: [idp], scopes: [a] }, { issuers: [idp], require_claims: [jti], max_age: 5m } ]
  - { path: /opt/**, upstream: orders, auth: { optional: true, issuers: [idp] } }
`

interface Run { status: number | null; stdout: string; stderr: string }

const jwtgate = async (...args: string[]): Promise<Run> => {
  const { code, stdout, stderr } = await run(args)
  return { status: code, stdout, stderr }
}

// Each run is a fresh process (about two seconds of start-up): the subtests run side by side.
t.test('explain', { jobs: 4 }, async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policy({ issuer: idp, upstream: up, routes: ROUTES }))
  const claims = (extra: Record<string, unknown>) => JSON.stringify({ iss: idp.url, aud: 'orders-api', sub: 'alice', ...extra })

  t.test('a matching route with claims: allowed, with the identity headers it would set', async (t) => {
    const res = await jwtgate('explain', '-c', file, 'GET', '/admin/users?page=2', '--claims', claims({ roles: ['admin', 'ops'] }))
    t.equal(res.status, 0, res.stderr)
    t.match(res.stdout, /^request +GET \/admin\/users\?page=2/m)
    t.match(res.stdout, /^path +\/admin\/users$/m, 'an already normal path is shown as is')
    t.match(res.stdout, /^route +routes\[1\] \/admin\/\*\*  methods GET, POST, host any$/m)
    t.match(res.stdout, `upstream  orders → ${up.url}/admin/users?page=2`)
    t.match(res.stdout, `requires  a valid token from idp (iss ${idp.url}, aud orders-api)`)
    t.match(res.stdout, /^ +claim roles contains "admin"$/m)
    t.match(res.stdout, /^decision  ALLOW \(token from idp\), with the claims given, taken as verified$/m)
    t.match(res.stdout, /^ +sets x-user-id: alice$/m)
    t.match(res.stdout, /^ +sets x-user-roles: admin,ops$/m)
    t.match(res.stdout, /^ +Authorization header forwarded$/m)
    t.equal(up.received.length, 0, 'nothing is sent anywhere')
  })

  t.test('a traversal path: the normalized path and the route it really lands on', async (t) => {
    const res = await jwtgate('explain', '-c', file, 'get', '/public/%2e%2e/admin/users')
    t.equal(res.status, 1, 'denied without a token')
    t.match(res.stdout, /^path +\/admin\/users  \(normalized from \/public\/%2e%2e\/admin\/users\)$/m)
    t.match(res.stdout, /^skipped +routes\[0\] \/public\/\*\*  path does not match$/m)
    t.match(res.stdout, /^route +routes\[1\] \/admin\/\*\*/m)
    t.match(res.stdout, `upstream  orders → ${up.url}/admin/users`)
    t.match(res.stdout, /^decision  DENY 401 missing_token: a bearer token is required$/m)
    t.match(res.stdout, /without a token \(give --token or --claims to check one\)/)
  })

  t.test('a path the gateway refuses: why, and no route', async (t) => {
    const res = await jwtgate('explain', '-c', file, 'GET', '/public/..%2fadmin')
    t.equal(res.status, 1)
    t.match(res.stdout, /^path +refused: the request path is not acceptable: encoded slash in path$/m)
    t.notMatch(res.stdout, /^route/m)
    t.match(res.stdout, /DENY 400 bad_path/)
  })

  t.test('earlier routes are listed with why each did not match', async (t) => {
    const res = await jwtgate('explain', '-c', file, 'GET', '/api/orders/7', '--host', 'api.example.com:8443', '--claims', claims({}))
    t.equal(res.status, 0, res.stderr)
    const skipped = res.stdout.split('\n').filter((l) => /routes\[[0-3]\]/.test(l))
    t.same(skipped.map((l) => l.slice(10)), [
      'routes[0] /public/**  path does not match',
      'routes[1] /admin/**  path does not match',
      'routes[2] /api/**  method GET is not one of POST',
      'routes[3] /api/**  host api.example.com:8443 does not match internal.example.com',
    ])
    t.match(res.stdout, /^route +routes\[4\] \/api\/\*\*  methods any, host any$/m)
    t.match(res.stdout, /^ +Authorization header removed$/m, 'forward_token: false is shown')

    const noHost = await jwtgate('explain', '-c', file, 'GET', '/api/orders/7')
    t.match(noHost.stdout, 'routes[3] /api/**  only for host internal.example.com (give --host)')
    const internal = await jwtgate('explain', '-c', file, 'GET', '/api/orders/7', '--host', 'internal.example.com')
    t.equal(internal.status, 0, 'auth none: allowed without a token')
    t.match(internal.stdout, /^requires  nothing: auth none$/m)
    t.match(internal.stdout, /^decision  ALLOW$/m)
  })

  t.test('--json: one object with the same facts', async (t) => {
    const res = await jwtgate('explain', '-c', file, 'GET', '/api/../api/orders/7?q=1', '--claims', claims({ roles: ['reader'] }), '--json')
    t.equal(res.status, 0, res.stderr)
    t.same(JSON.parse(res.stdout), {
      request: { method: 'GET', target: '/api/../api/orders/7?q=1', host: null },
      path: '/api/orders/7',
      skipped: [
        { index: 0, path: '/public/**', methods: null, host: null, mismatch: 'path' },
        { index: 1, path: '/admin/**', methods: ['GET', 'POST'], host: null, mismatch: 'path' },
        { index: 2, path: '/api/**', methods: ['POST'], host: null, mismatch: 'method' },
        { index: 3, path: '/api/**', methods: null, host: 'internal.example.com', mismatch: 'host' },
      ],
      route: { index: 4, path: '/api/**', methods: null, host: null },
      upstream: { name: 'orders', url: `${up.url}/api/orders/7?q=1` },
      requires: { auth: 'token', issuers: [{ name: 'idp', iss: idp.url, audiences: ['orders-api'] }], claims: [], scopes: [] },
      evaluated_with: 'claims',
      claims: { iss: idp.url, aud: 'orders-api', sub: 'alice', roles: ['reader'] },
      decision: 'allow',
      issuer: 'idp',
      identity_headers: { 'x-user-id': 'alice', 'x-user-roles': 'reader' },
      authorization_forwarded: false,
    })

    const denied = await jwtgate('explain', '-c', file, 'POST', '/api/orders', '--claims', claims({}), '--json')
    t.equal(denied.status, 1)
    t.match(JSON.parse(denied.stdout), {
      route: { index: 2 },
      requires: { auth: 'token', scopes: ['orders:write'] },
      decision: 'deny',
      status: 403,
      reason: 'insufficient_claims',
      description: 'the token lacks a required scope',
    })
    t.notOk('identity_headers' in JSON.parse(denied.stdout))
  })

  t.test('--claims without iss or aud: filled from the route\'s first issuer, as jwtgate test does', async (t) => {
    const [filled, noAud] = await Promise.all([
      jwtgate('explain', '-c', file, 'GET', '/admin/users', '--claims', '{"sub":"bob","roles":["admin"]}'),
      jwtgate('explain', '-c', file, 'GET', '/admin/users', '--claims', '{"sub":"bob","roles":["admin"],"aud":null}'),
    ])
    t.equal(filled.status, 0, filled.stdout + filled.stderr)
    t.match(filled.stdout, `claims    {"sub":"bob","roles":["admin"],"iss":"${idp.url}","aud":"orders-api"}`)
    t.match(filled.stdout, /sets x-user-id: bob/)
    t.equal(noAud.status, 1)
    t.match(noAud.stdout, /DENY 401 wrong_audience: the token has no aud claim/)
  })

  t.test('a denied request exits 1 and says why', async (t) => {
    const res = await jwtgate('explain', '-c', file, 'GET', '/admin/users', '--claims', claims({ roles: ['reader'] }))
    t.equal(res.status, 1)
    t.match(res.stdout, /^decision  DENY 403 insufficient_claims: the token lacks the required claim roles$/m)
    t.notMatch(res.stdout, /sets /)
    const noRoute = await jwtgate('explain', '-c', file, 'DELETE', '/admin/users')
    t.equal(noRoute.status, 1)
    t.match(noRoute.stdout, 'routes[1] /admin/**  method DELETE is not one of GET, POST')
    t.match(noRoute.stdout, /^route +no route matches: 404$/m)
    t.match(noRoute.stdout, /DENY 404 no_route/)
  })

  t.test('a requirement tree on a report route, and an optional token', async (t) => {
    const [tree, json, optional] = await Promise.all([
      jwtgate('explain', '-c', file, 'GET', '/tree/x', '--claims', '{"sub":"bob","scope":"a"}'),
      jwtgate('explain', '-c', file, 'GET', '/tree/x', '--claims', '{"sub":"bob","email":"bob@example.com"}', '--json'),
      jwtgate('explain', '-c', file, 'GET', '/opt/x'),
    ])
    t.equal(tree.status, 1, 'the route\'s decision, though a report route forwards anyway')
    const lines = tree.stdout.trimEnd().split('\n')
    t.same(lines.slice(lines.findIndex((l) => l.startsWith('requires'))).filter((l) => !l.startsWith('claims')), [
      `requires  any of:`,
      `            1. a valid token from idp (iss ${idp.url}, aud admin-api)`,
      `               typ at+jwt`,
      `               claim email matches ".+@example\\\\.com" (whole string)`,
      `            2. all of:`,
      `                 1. a valid token from idp (iss ${idp.url}, aud orders-api)`,
      `                    scopes a`,
      `                 2. a valid token from idp (iss ${idp.url}, aud orders-api)`,
      `                    must carry jti`,
      `                    issued at most 5m ago (max_age)`,
      `mode      report: the decision is logged and counted, and the request forwarded whatever it is`,
      `decision  DENY 403 insufficient_claims: the token lacks the required claim email`,
      `          with the claims given, taken as verified (typ, a header, is not checked)`,
      `          not enforced (mode report): forwarded anyway`,
      `          sets x-user-id: bob`,
      `          Authorization header forwarded`,
    ])
    t.match(tree.stdout, /"aud":"admin-api"/, 'the claims get the audience the tree wants from the issuer')

    t.equal(json.status, 0, json.stdout + json.stderr)
    t.match(JSON.parse(json.stdout), {
      requires: { auth: 'token', any: [
        { issuers: [{ name: 'idp', audiences: ['admin-api'] }], claims: [{ claim: 'email', matches: '.+@example\\.com' }], typ: ['at+jwt'] },
        { all: [{ scopes: ['a'] }, { require_claims: ['jti'], max_age: '5m' }] },
      ] },
      mode: 'report',
      decision: 'allow',
      identity_headers: { 'x-user-id': 'bob' },
    })

    t.equal(optional.status, 0)
    t.match(optional.stdout, /^requires  no token, or a token that meets:\n {12}a valid token from idp/m)
    t.match(optional.stdout, /^decision  ALLOW, without a token \(give --token or --claims to check one\)\n {10}sets no identity headers \(no token\)$/m)
  })

  t.test('--token: verified for real, keys fetched from the issuer', async (t) => {
    const before = idp.fetches
    const token = idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['admin'] })
    const res = await jwtgate('explain', '-c', file, 'GET', '/admin/users', '--token', `Bearer ${token}`)
    t.equal(res.status, 0, res.stdout + res.stderr)
    t.match(res.stdout, /ALLOW \(token from idp\), with the token given, verified against the issuer's keys/)
    t.match(res.stdout, /sets x-user-id: alice/)
    t.ok(idp.fetches > before, 'the JWKS was fetched')
    t.notMatch(res.stdout + res.stderr, token.split('.')[2]!, 'the token is not echoed')

    const expired = await jwtgate('explain', '-c', file, 'GET', '/admin/users', '--token', idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['admin'] }, { expiresInSeconds: -600 }))
    t.equal(expired.status, 1)
    t.match(expired.stdout, /DENY 401 expired: the token has expired/)

    const forged = signToken(generateDevKey({ alg: 'RS256', kid: idp.keys[0]!.kid }), { iss: idp.url, aud: 'orders-api', sub: 'mallory', roles: ['admin'], exp: Math.floor(Date.now() / 1000) + 60 })
    const bad = await jwtgate('explain', '-c', file, 'GET', '/admin/users', '--token', forged)
    t.equal(bad.status, 1)
    t.match(bad.stdout, /DENY 401 bad_signature/)
  })

  t.test('usage errors exit 2; a bad policy exits 1 with file:line:col', async (t) => {
    const misuses = [['GET'], ['GET', '/x', '/y'], ['/x', 'GET'], ['GET', '/x', '--claims', '{"sub":'], ['GET', '/x', '--claims', '[1]'],
      ['GET', '/x', '--token', 'a.b.c', '--claims', '{}'], ['GET', '/x', '--bogus']]
    const results = await Promise.all(misuses.map((args) => jwtgate('explain', '-c', file, ...args)))
    results.forEach((res, i) => {
      t.equal(res.status, 2, misuses[i]!.join(' '))
      t.match(res.stderr, /^jwtgate: .+\nusage:/, misuses[i]!.join(' '))
    })
    const bad = tempFile('bad.yaml', 'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - path: /x\n    upstream: b\n    auth: none\n')
    const res = await jwtgate('explain', '-c', bad, 'GET', '/x')
    t.equal(res.status, 1)
    t.match(res.stderr, `${bad}:7:15 unknown upstream "b" (known: a)`)
    t.equal(res.stdout, '')
  })
})
