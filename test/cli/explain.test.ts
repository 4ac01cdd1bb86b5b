// `jwtgate explain`: what the gateway would do with one request, and why. In-process, from the
// command's arguments to what it prints; one child process proves the command's wiring.
import t from 'tap'
import { explain, explainArguments } from '../../src/explain.js'
import { explainHere, jwtgate as child } from '../support/cli.js'
import { generateDevKey, signToken } from '../../src/devkit/dev_issuer.js'
import { formatProblem, PolicyError } from '../../src/policy/problems.js'
import { issuer, policy, tempFile, upstream } from '../support/harness.js'

const ROUTES = `
  - { path: /public/**, upstream: orders, auth: none }
  - path: /admin/**
    name: admin
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

t.test('explain', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policy({ issuer: idp, upstream: up, routes: ROUTES }))
  const claims = (extra: Record<string, unknown>) => JSON.stringify({ iss: idp.url, aud: 'orders-api', sub: 'alice', ...extra })

  t.test('a matching route with claims: allowed, with the identity headers it would set', async (t) => {
    const res = await explainHere(['-c', file, 'GET', '/admin/users?page=2', '--claims', claims({ roles: ['admin', 'ops'] })])
    t.equal(res.code, 0, res.stdout)
    t.match(res.stdout, /^request +GET \/admin\/users\?page=2/m)
    t.match(res.stdout, /^path +\/admin\/users$/m, 'an already normal path is shown as is')
    t.match(res.stdout, /^route +admin \(routes\[1\] \/admin\/\*\*\)  methods GET, POST, host any$/m)
    t.match(res.stdout, `upstream  orders → ${up.url}/admin/users?page=2`)
    t.match(res.stdout, `requires  a valid token from idp (iss ${idp.url}, aud orders-api)`)
    t.match(res.stdout, /^ +claim roles must contain "admin"$/m)
    t.match(res.stdout, /^decision  ALLOW \(token from idp\), with the claims given, taken as verified$/m)
    t.match(res.stdout, /^ +sets x-user-id: alice$/m)
    t.match(res.stdout, /^ +sets x-user-roles: admin,ops$/m)
    t.match(res.stdout, /^ +Authorization header removed$/m)
    t.equal(up.received.length, 0, 'nothing is sent anywhere')
  })

  t.test('a traversal path: the normalized path and the route it really lands on', async (t) => {
    const res = await explainHere(['-c', file, 'get', '/public/%2e%2e/admin/users'])
    t.equal(res.code, 1, 'denied without a token')
    t.match(res.stdout, /^path +\/admin\/users  \(normalized from \/public\/%2e%2e\/admin\/users\)$/m)
    t.match(res.stdout, /^skipped +\/public\/\*\* \(routes\[0\]\)  path does not match$/m)
    t.match(res.stdout, /^route +admin \(routes\[1\] \/admin\/\*\*\)/m)
    t.match(res.stdout, `upstream  orders → ${up.url}/admin/users`)
    t.match(res.stdout, /^decision  DENY 401 missing_token: a bearer token is required$/m)
    t.match(res.stdout, /without a token \(give --token or --claims to check one\)/)
  })

  t.test('a path the gateway refuses: why, and no route', async (t) => {
    const res = await explainHere(['-c', file, 'GET', '/public/..%2fadmin'])
    t.equal(res.code, 1)
    t.match(res.stdout, /^path +refused: the request path is not acceptable: encoded slash in path$/m)
    t.notMatch(res.stdout, /^route/m)
    t.match(res.stdout, /DENY 400 bad_path/)
  })

  t.test('earlier routes are listed with why each did not match', async (t) => {
    const res = await explainHere(['-c', file, 'GET', '/api/orders/7', '--host', 'api.example.com:8443', '--claims', claims({})])
    t.equal(res.code, 0, res.stdout)
    const skipped = res.stdout.split('\n').filter((l) => /routes\[[0-3]\]/.test(l))
    t.same(
      skipped.map((l) => l.slice(10)),
      [
        '/public/** (routes[0])  path does not match',
        'admin (routes[1] /admin/**)  path does not match',
        'POST /api/** (routes[2])  method GET is not one of POST',
        'internal.example.com/api/** (routes[3])  host api.example.com:8443 does not match internal.example.com',
      ],
    )
    t.match(res.stdout, /^route +\/api\/\*\* \(routes\[4\]\)  methods any, host any$/m)
    t.match(res.stdout, /^ +Authorization header removed$/m, 'forward_token: false is shown')

    const noHost = await explainHere(['-c', file, 'GET', '/api/orders/7'])
    t.match(noHost.stdout, 'internal.example.com/api/** (routes[3])  only for host internal.example.com (give --host)')
    const internal = await explainHere(['-c', file, 'GET', '/api/orders/7', '--host', 'internal.example.com'])
    t.equal(internal.code, 0, 'auth none: allowed without a token')
    t.match(internal.stdout, /^requires  nothing: auth none$/m)
    t.match(internal.stdout, /^decision  ALLOW$/m)
  })

  t.test('--json: one object with the same facts', async (t) => {
    const res = await explainHere(['-c', file, 'GET', '/api/../api/orders/7?q=1', '--claims', claims({ roles: ['reader'] }), '--json'])
    t.equal(res.code, 0, res.stdout)
    t.same(JSON.parse(res.stdout), {
      request: { method: 'GET', target: '/api/../api/orders/7?q=1', host: null },
      path: '/api/orders/7',
      skipped: [
        { name: '/public/**', index: 0, path: '/public/**', methods: null, host: null, mismatch: 'path' },
        { name: 'admin', index: 1, path: '/admin/**', methods: ['GET', 'POST'], host: null, mismatch: 'path' },
        { name: 'POST /api/**', index: 2, path: '/api/**', methods: ['POST'], host: null, mismatch: 'method' },
        { name: 'internal.example.com/api/**', index: 3, path: '/api/**', methods: null, host: 'internal.example.com', mismatch: 'host' },
      ],
      route: { name: '/api/**', index: 4, path: '/api/**', methods: null, host: null },
      upstream: { name: 'orders', url: `${up.url}/api/orders/7?q=1` },
      requires: { auth: 'token', issuers: [{ name: 'idp', iss: idp.url, audiences: ['orders-api'] }], claims: [], scopes: [] },
      evaluated_with: 'claims',
      claims: { iss: idp.url, aud: 'orders-api', sub: 'alice', roles: ['reader'] },
      decision: 'allow',
      issuer: 'idp',
      identity_headers: { 'x-user-id': 'alice', 'x-user-roles': 'reader' },
      authorization_forwarded: false,
    })

    const denied = await explainHere(['-c', file, 'POST', '/api/orders', '--claims', claims({}), '--json'])
    t.equal(denied.code, 1)
    t.match(JSON.parse(denied.stdout), {
      route: { index: 2, name: 'POST /api/**' },
      requires: { auth: 'token', scopes: ['orders:write'] },
      decision: 'deny',
      status: 403,
      reason: 'insufficient_claims',
      description: 'the token lacks a required scope',
    })
    t.notOk('identity_headers' in JSON.parse(denied.stdout))
  })

  t.test("--claims without iss or aud: filled from the route's first issuer, as jwtgate test does", async (t) => {
    const [filled, noAud] = await Promise.all([
      explainHere(['-c', file, 'GET', '/admin/users', '--claims', '{"sub":"bob","roles":["admin"]}']),
      explainHere(['-c', file, 'GET', '/admin/users', '--claims', '{"sub":"bob","roles":["admin"],"aud":null}']),
    ])
    t.equal(filled.code, 0, filled.stdout)
    t.match(filled.stdout, `claims    {"sub":"bob","roles":["admin"],"iss":"${idp.url}","aud":"orders-api"}`)
    t.match(filled.stdout, /sets x-user-id: bob/)
    t.equal(noAud.code, 1)
    t.match(noAud.stdout, /DENY 401 wrong_audience: the token has no aud claim/)
  })

  t.test('a denied request exits 1 and says why', async (t) => {
    const res = await explainHere(['-c', file, 'GET', '/admin/users', '--claims', claims({ roles: ['reader'] })])
    t.equal(res.code, 1)
    t.match(res.stdout, /^decision  DENY 403 insufficient_claims: the token lacks the required claim roles \(it must contain "admin"\)$/m)
    t.match(res.stdout, /^ {10}roles must contain "admin"; found \["reader"\]$/m, 'the value found and the one wanted')
    t.notMatch(res.stdout, /sets /)
    const noRoute = await explainHere(['-c', file, 'DELETE', '/admin/users'])
    t.equal(noRoute.code, 1)
    t.match(noRoute.stdout, 'admin (routes[1] /admin/**)  method DELETE is not one of GET, POST')
    t.match(noRoute.stdout, /^route +no route matches: 404$/m)
    t.match(noRoute.stdout, /DENY 404 no_route/)
  })

  t.test('a requirement tree on a report route, and an optional token', async (t) => {
    const [tree, json, optional] = await Promise.all([
      explainHere(['-c', file, 'GET', '/tree/x', '--claims', '{"sub":"bob","scope":"a"}']),
      explainHere(['-c', file, 'GET', '/tree/x', '--claims', '{"sub":"bob","email":"bob@example.com"}', '--json']),
      explainHere(['-c', file, 'GET', '/opt/x']),
    ])
    t.equal(tree.code, 1, "the route's decision, though a report route forwards anyway")
    const lines = tree.stdout.trimEnd().split('\n')
    t.same(
      lines.slice(lines.findIndex((l) => l.startsWith('requires'))).filter((l) => !l.startsWith('claims')),
      [
        `requires  any of:`,
        `            1. a valid token from idp (iss ${idp.url}, aud admin-api)`,
        `               typ at+jwt`,
        `               claim email must match ".+@example\\\\.com" as a whole`,
        `            2. all of:`,
        `                 1. a valid token from idp (iss ${idp.url}, aud orders-api)`,
        `                    scopes a`,
        `                 2. a valid token from idp (iss ${idp.url}, aud orders-api)`,
        `                    must carry jti`,
        `                    issued at most 5m ago (max_age)`,
        `mode      report: the decision is logged and counted, and the request forwarded whatever it is`,
        `decision  DENY 403 insufficient_claims: the token lacks the required claim email (it must match ".+@example\\\\.com" as a whole)`,
        `          email must match ".+@example\\\\.com" as a whole; found nothing`,
        `          with the claims given, taken as verified (typ, a header, is not checked)`,
        `          not enforced (mode report): forwarded anyway`,
        `          sets x-user-id: bob`,
        `          Authorization header removed`,
      ],
    )
    t.match(tree.stdout, /"aud":"admin-api"/, 'the claims get the audience the tree wants from the issuer')

    t.equal(json.code, 0, json.stdout)
    t.match(JSON.parse(json.stdout), {
      requires: {
        auth: 'token',
        any: [
          { issuers: [{ name: 'idp', audiences: ['admin-api'] }], claims: [{ claim: 'email', matches: '.+@example\\.com' }], typ: ['at+jwt'] },
          { all: [{ scopes: ['a'] }, { require_claims: ['jti'], max_age: '5m' }] },
        ],
      },
      mode: 'report',
      decision: 'allow',
      identity_headers: { 'x-user-id': 'bob' },
    })

    t.equal(optional.code, 0)
    t.match(optional.stdout, /^requires  no token, or a token that meets:\n {12}a valid token from idp/m)
    t.match(optional.stdout, /^decision  ALLOW, without a token \(give --token or --claims to check one\)\n {10}sets no identity headers \(no token\)$/m)
  })

  t.test('--token: verified for real, keys fetched from the issuer', async (t) => {
    const before = idp.fetches
    const token = idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['admin'] })
    const res = await explainHere(['-c', file, 'GET', '/admin/users', '--token', `Bearer ${token}`])
    t.equal(res.code, 0, res.stdout)
    t.match(res.stdout, /ALLOW \(token from idp\), with the token given, verified against the issuer's keys/)
    t.match(res.stdout, /sets x-user-id: alice/)
    t.ok(idp.fetches > before, 'the JWKS was fetched')
    t.notMatch(res.stdout, token.split('.')[2]!, 'the token is not echoed')

    const expired = await explainHere([
      '-c',
      file,
      'GET',
      '/admin/users',
      '--token',
      idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['admin'] }, { expiresInSeconds: -600 }),
    ])
    t.equal(expired.code, 1)
    t.match(expired.stdout, /DENY 401 expired: the token has expired/)

    const forged = signToken(generateDevKey({ alg: 'RS256', kid: idp.keys[0]!.kid }), {
      iss: idp.url,
      aud: 'orders-api',
      sub: 'mallory',
      roles: ['admin'],
      exp: Math.floor(Date.now() / 1000) + 60,
    })
    const bad = await explainHere(['-c', file, 'GET', '/admin/users', '--token', forged])
    t.equal(bad.code, 1)
    t.match(bad.stdout, /DENY 401 bad_signature/)

    // The token was there before the keys were fetched: a kid the set lacks is a 401, not the
    // proxy's 503 for a kid that may have been published since its last fetch.
    const unpublished = signToken(generateDevKey({ alg: 'RS256', kid: 'never-published' }), {
      iss: idp.url,
      aud: 'orders-api',
      sub: 'mallory',
      exp: Math.floor(Date.now() / 1000) + 60,
    })
    const unknown = await explainHere(['-c', file, 'GET', '/admin/users', '--token', unpublished])
    t.equal(unknown.code, 1)
    t.match(unknown.stdout, /DENY 401 unknown_kid/)
  })

  t.test('--token shows its header and claims, never its signature, and what a refusing check found and wanted', async (t) => {
    // The issuer differs by a trailing slash: the usual reason an IdP's tokens "are not accepted".
    const slashless = idp.url.replace(/\/$/, '')
    const token = idp.sign({ iss: slashless, sub: 'alice', aud: 'orders-api', roles: ['admin'] })
    const res = await explainHere(['-c', file, 'GET', '/admin/users', '--token', token])
    t.equal(res.code, 1)
    t.match(res.stdout, `\ntoken     header {"alg":"RS256","typ":"JWT","kid":"${idp.keys[0]!.kid}"}\n`)
    t.match(res.stdout, `\n          claims {"iss":"${slashless}","iat":`)
    t.match(res.stdout, '\ndecision  DENY 401 wrong_issuer: the token issuer is not accepted here\n')
    t.match(res.stdout, `\n          iss must be "${idp.url}"; found "${slashless}"\n`)
    t.match(res.stdout, `\n          "${slashless}" differs from the accepted "${idp.url}" only by a trailing slash\n`)
    t.notMatch(res.stdout, token.split('.')[2]!, 'never the signature')

    const [audience, claim, garbage] = await Promise.all([
      explainHere(['-c', file, 'GET', '/admin/users', '--token', idp.sign({ sub: 'alice', aud: ['billing-api'], roles: ['reader'] }), '--json']),
      explainHere(['-c', file, 'GET', '/admin/users', '--token', idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['reader'] }), '--json']),
      explainHere(['-c', file, 'GET', '/admin/users', '--token', 'not-a-token']),
    ])
    const json = JSON.parse(audience.stdout)
    // Every check the token fails, in one run: the one that decided, then the others.
    t.match(json, {
      token: { header: { alg: 'RS256' }, claims: { sub: 'alice', aud: ['billing-api'] } },
      reason: 'wrong_audience',
      checks: [
        { claim: 'aud', found: ['billing-api'], wanted: 'must be "orders-api"', accepted: ['orders-api'] },
        { claim: 'roles', found: ['reader'], wanted: 'must contain "admin"' },
      ],
    })
    t.equal(json.checks.length, 2)
    t.same(Object.keys(json.token), ['header', 'claims'])
    t.match(JSON.parse(claim.stdout), {
      status: 403,
      description: 'the token lacks the required claim roles (it must contain "admin")',
      checks: [{ claim: 'roles', found: ['reader'], wanted: 'must contain "admin"' }],
    })
    t.match(garbage.stdout, /^token     not a well-formed JWT: it cannot be decoded$/m)
    t.match(garbage.stdout, /DENY 401 malformed/)
  })

  t.test('usage errors are refused before anything is read; a bad policy is refused with file:line:col', async (t) => {
    const misuses = [
      ['GET'],
      ['GET', '/x', '/y'],
      ['/x', 'GET'],
      ['GET', '/x', '--claims', '{"sub":'],
      ['GET', '/x', '--claims', '[1]'],
      ['GET', '/x', '--token', 'a.b.c', '--claims', '{}'],
      ['GET', '/x', '--bogus'],
      ['OPTIONS', '/x', '--preflight', 'GET'],
      ['GET', '/x', '--preflight-headers', 'a'],
    ]
    for (const args of misuses) t.type(explainArguments(['-c', file, ...args], {}), 'string', args.join(' '))
    t.type(explainArguments(['GET', '/x'], {}), 'string', 'no policy')
    t.match(explainArguments(['GET', '/x'], { JWTGATE_CONFIG: file }), { options: { policyFile: file } }, 'the policy from JWTGATE_CONFIG')
    t.match(
      explainArguments(['-c', file, 'get', '/x', '--token', 'Bearer a.b.c'], {}),
      { options: { method: 'GET', token: 'a.b.c' }, json: false },
      'a token pasted with its scheme',
    )
    const bad = tempFile(
      'bad.yaml',
      'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - path: /x\n    upstream: b\n    auth: none\n',
    )
    const refused = await explain({ policyFile: bad, method: 'GET', target: '/x' }).catch((err: unknown) => err)
    t.type(refused, PolicyError)
    t.same((refused as PolicyError).problems.map(formatProblem), [`${bad}:7:15 unknown upstream "b" (known: a)`])
  })
})

// The command's wiring: arguments, exit code 1 for a denial, the JSON on stdout, nothing on stderr.
t.test('the jwtgate explain command', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policy({ issuer: idp, upstream: up, routes: ROUTES }))
  const res = await child(['explain', '-c', file, 'post', '/api/orders', '--claims', JSON.stringify({ sub: 'alice' }), '--json'])
  t.equal(res.code, 1, res.stderr)
  t.match(JSON.parse(res.stdout), { request: { method: 'POST' }, route: { index: 2, name: 'POST /api/**' }, decision: 'deny', reason: 'insufficient_claims' })
  t.equal(res.stderr, '')
})

t.test('explain a gRPC call: the method is a path, and a denial says the grpc-status the client gets', async (t) => {
  const idp = await issuer(t)
  const file = tempFile(
    'policy.yaml',
    `version: 1
listen: { port: 0, protocols: [h2c] }
issuers:
  idp: { issuer: ${idp.url}, jwks_uri: ${idp.jwksUri}, audiences: [echo-api], algorithms: [RS256] }
upstreams:
  echo: { url: "http://127.0.0.1:50051", protocol: h2c }
routes:
  - { path: /demo.Echo/*, upstream: echo, grpc: true, auth: { issuers: [idp], claims: { roles: { contains: streamer } } } }
`,
  )
  const none = await explainHere(['-c', file, 'POST', '/demo.Echo/Count'])
  t.equal(none.code, 1)
  t.match(none.stdout, /DENY 401 missing_token: .*\n +a gRPC call gets grpc-status 16, grpc-message missing_token/)
  const json = JSON.parse(
    (await explainHere(['-c', file, 'POST', '/demo.Echo/Count', '--claims', JSON.stringify({ iss: idp.url, aud: 'echo-api', sub: 'a' }), '--json'])).stdout,
  )
  t.match(json, { decision: 'deny', status: 403, reason: 'insufficient_claims', grpc_status: 7 })
  const allowed = await explainHere([
    '-c',
    file,
    'POST',
    '/demo.Echo/Count',
    '--claims',
    JSON.stringify({ iss: idp.url, aud: 'echo-api', sub: 'a', roles: ['streamer'] }),
  ])
  t.equal(allowed.code, 0)
  t.match(allowed.stdout, /http:\/\/127\.0\.0\.1:50051\/demo\.Echo\/Count/)
})
