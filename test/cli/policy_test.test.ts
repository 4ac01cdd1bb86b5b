// `jwtgate test`: expected decisions checked offline, and checked against what a running gateway
// really answers. In-process, from the files to what the command prints, with the network
// refused while it runs; one child process proves the command's wiring.
import t from 'tap'
import dns from 'node:dns'
import net from 'node:net'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { runPolicyTests, testRunReport } from '../../src/cli/policy_test.js'
import { jwtgate } from '../support/cli.js'
import { gateway, issuer, policy, rawRequest, tempFile, upstream } from '../support/harness.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** `jwtgate test -c POLICY FILE` without the process: what it prints and its exit code. Fails the test if it used the network. */
async function jwtgateTest(
  policyFile: string,
  testFile: string,
  env: Record<string, string> = {},
): Promise<{ status: number; stdout: string; stderr: string }> {
  const network: string[] = []
  const restore = refuseNetwork(network)
  try {
    const { code, stdout, stderr } = testRunReport(await runPolicyTests(policyFile, [testFile], env))
    // As the child of the command's own test below would: exit 99, saying what it tried.
    if (network.length) return { status: 99, stdout, stderr: network.map((n) => `NETWORK USED: ${n}\n`).join('') }
    return { status: code, stdout, stderr }
  } finally {
    restore()
  }
}

/** Any connection, listener or DNS lookup while `jwtgate test` runs is recorded and refused. */
function refuseNetwork(used: string[]): () => void {
  const saved = { connect: net.Socket.prototype.connect, listen: net.Server.prototype.listen, lookup: dns.lookup, promisesLookup: dns.promises.lookup }
  const refuse = (what: string) =>
    function refused(...args: unknown[]): never {
      used.push(`${what} ${JSON.stringify(args[0])}`)
      throw new Error(`NETWORK USED: ${what}`)
    }
  net.Socket.prototype.connect = refuse('connect') as typeof net.Socket.prototype.connect
  net.Server.prototype.listen = refuse('listen') as typeof net.Server.prototype.listen
  dns.lookup = refuse('dns.lookup') as unknown as typeof dns.lookup
  dns.promises.lookup = refuse('dns.promises.lookup') as typeof dns.promises.lookup
  return () => {
    net.Socket.prototype.connect = saved.connect
    net.Server.prototype.listen = saved.listen
    dns.lookup = saved.lookup
    dns.promises.lookup = saved.promisesLookup
  }
}

// Loaded into the child before anything else: any connection, listener or DNS lookup ends it.
const NO_NETWORK = tempFile(
  'no-network.mjs',
  `
import net from 'node:net'
import dns from 'node:dns'
const refuse = (what) => function () { process.stderr.write('NETWORK USED: ' + what + '\\n'); process.exit(99) }
net.Socket.prototype.connect = refuse('connect')
net.Server.prototype.listen = refuse('listen')
dns.lookup = refuse('dns.lookup')
dns.promises.lookup = refuse('dns.promises.lookup')
`,
)

// Issuers with key sets nobody serves: `jwtgate test` must never need them.
const POLICY = tempFile(
  'policy.yaml',
  `version: 1
listen: { port: 8080 }
issuers:
  idp:
    issuer: https://idp.example.com/
    jwks_uri: https://idp.example.com/.well-known/jwks.json
    audiences: [orders-api, admin-api]
    algorithms: [RS256]
  partner:
    issuer: https://partner.example.net/
    jwks_uri: https://partner.example.net/jwks.json
    audiences: [partner-api]
    algorithms: [ES256]
upstreams:
  orders: { url: "http://127.0.0.1:3001/v1" }
  partners: { url: "http://127.0.0.1:3002" }
identity_headers:
  x-user-id: sub
  x-user-roles: roles
routes:
  - { path: /public/**, upstream: orders, auth: none }
  - path: /admin/**
    name: admin
    methods: [GET, POST]
    upstream: orders
    auth: { issuers: [idp], claims: { roles: { contains: admin } } }
  - { path: /partner/**, upstream: partners, auth: { issuers: [partner, idp] } }
  - { path: /api/**, host: "*.example.com", upstream: orders, auth: { issuers: [idp], scopes: ["orders:read"] } }
  - path: /tree/**
    upstream: orders
    auth:
      any:
        - { issuers: [idp], audiences: [admin-api], claims: { roles: { contains_any: [admin, ops] } } }
        - { issuers: [idp], scopes: ["orders:admin"], typ: at+jwt }
  - { path: /opt/**, upstream: orders, auth: { optional: true, issuers: [idp] } }
  - { path: /report/**, upstream: orders, mode: report, auth: { issuers: [idp], claims: { email: { matches: '.+@example\\.com' } } } }
  - { path: /payload/**, upstream: orders, forward_payload_header: x-jwt-payload, identity_headers: { x-user-id: app.id }, auth: { issuers: [idp] } }
`,
)

t.test('a passing file: one ok line per case, the summary, exit 0', async (t) => {
  const file = tempFile(
    'policy.test.yaml',
    `
tokens:
  admin: { iss: https://idp.example.com/, aud: orders-api, sub: alice, roles: [admin] }
  reader: { iss: https://idp.example.com/, aud: orders-api, sub: bob, roles: [reader] }
cases:
  - { request: GET /admin/users, token: admin, expect: allow, route: admin, upstream: orders, headers: { x-user-id: alice, x-user-roles: admin } }
  - { request: GET /admin/users, expect: 401 }
  - { request: GET /admin/users, token: reader, expect: insufficient_claims }
  - { request: DELETE /admin/users, token: admin, expect: 404 }
  - { request: GET /public/../admin/users?x=1, token: { sub: carol }, expect: 403, upstream: orders }
  - { request: GET /public/a, expect: allow, headers: { x-user-id: null } }
  - { request: GET /partner/x, token: { sub: p1 }, expect: allow, upstream: partners, headers: { x-user-id: p1 } }
  - { request: GET /partner/x, token: { sub: p1, iss: https://idp.example.com/ }, expect: wrong_audience }
  - { request: GET /partner/x, token: { sub: p1, aud: null }, expect: wrong_audience }
  - { request: GET /api/orders, host: shop.example.com, token: { sub: d, scope: "orders:read" }, expect: allow }
  - { request: GET /api/orders, token: { sub: d, scope: "orders:read" }, expect: no_route }
  - { request: GET /api/orders, host: shop.example.com, token: admin, expect: 403 }
  - { request: GET /public/%2fetc, expect: bad_path }
  # Requirement trees, optional tokens, report routes (the route's decision is checked), identity output.
  - { request: GET /tree/a, token: { sub: a, roles: [ops] }, expect: allow, headers: { x-user-id: a } }
  - { request: GET /tree/a, token: { sub: a, aud: orders-api, scope: "orders:admin" }, expect: allow }
  - { request: GET /tree/a, token: { sub: a, aud: orders-api }, expect: insufficient_claims }
  - { request: GET /opt/a, expect: allow, headers: { x-user-id: null } }
  - { request: GET /opt/a, token: { sub: b }, expect: allow, headers: { x-user-id: b } }
  - { request: GET /opt/a, token: { sub: b, aud: other }, expect: wrong_audience }
  - { request: GET /report/a, token: { sub: c, email: c@example.com }, expect: allow }
  - { request: GET /report/a, token: { sub: c, email: c@example.org }, expect: 403, headers: { x-user-id: c } }
  - { request: GET /report/a, expect: missing_token }
  - { request: GET /payload/a, token: { sub: d, app: { id: u-1 } }, expect: allow, headers: { x-user-id: u-1, x-jwt-payload: eyJzdWIiOiJkIiwiYXBwIjp7ImlkIjoidS0xIn0sImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUuY29tLyIsImF1ZCI6Im9yZGVycy1hcGkifQ } }
`,
  )
  const res = await jwtgateTest(POLICY, file)
  t.equal(res.status, 0, res.stdout + res.stderr)
  const lines = res.stdout.trimEnd().split('\n')
  t.equal(lines.length, 24)
  t.match(lines[0], /^ok   GET \/admin\/users \[admin\] +allow → orders  \(route admin\)$/)
  t.match(lines[1], /^ok   GET \/admin\/users +401 missing_token  \(route admin\)$/)
  t.match(lines[4], /^ok   GET \/public\/\.\.\/admin\/users\?x=1 \[\{sub: carol\}\] +403 insufficient_claims  \(route admin\)$/)
  t.match(lines[6], /^ok   GET \/partner\/x \[\{sub: p1\}\] +allow → partners  \(route \/partner\/\*\*\)$/, "inline claims get the route's first issuer")
  t.match(lines[9], /^ok   GET \/api\/orders \(host shop\.example\.com\)/)
  t.match(
    lines[20],
    /^ok   GET \/report\/a \[\{sub: c, email: c@example\.org\}\] +403 insufficient_claims \(mode report: forwarded to orders anyway\)  \(route \/report\/\*\*\)$/,
  )
  t.match(lines[21], /^ok   GET \/report\/a +401 missing_token \(mode report: forwarded to orders anyway\)  \(route \/report\/\*\*\)$/)
  t.equal(lines[23], '23 passed, 0 failed')
  t.equal(res.stderr, '')
})

t.test('a failing case: a FAIL line saying what was expected and what came instead, exit 1', async (t) => {
  const file = tempFile(
    'policy.test.yaml',
    `tokens:
  reader: { iss: https://idp.example.com/, aud: orders-api, sub: bob, roles: [reader] }
cases:
  - { request: GET /public/a, expect: allow }
  - { request: GET /admin/users, token: reader, expect: allow }
  - request: GET /partner/x
    token: reader
    expect: 403
  - { request: GET /partner/x, token: reader, expect: allow, route: admin, upstream: orders, headers: { x-user-id: alice, x-user-roles: null } }
`,
  )
  const res = await jwtgateTest(POLICY, file)
  t.equal(res.status, 1)
  const lines = res.stdout.trimEnd().split('\n')
  t.match(lines[0], /^ok   /)
  // What refused the token: the value found and the one wanted.
  t.match(
    lines[1],
    `FAIL GET /admin/users [reader]  expected allow, got 403 insufficient_claims (roles must contain "admin"; found ["reader"])  (route admin)  at ${file}:5:5`,
  )
  t.match(lines[2], `FAIL GET /partner/x [reader]    expected 403, got allow → partners  (route /partner/**)  at ${file}:6:5`)
  t.match(
    lines[3],
    'expected route admin, got /partner/**; expected upstream orders, got partners; expected x-user-id: alice, got x-user-id: bob; expected no x-user-roles, got x-user-roles: reader',
  )
  t.equal(lines[4], '1 passed, 3 failed')
})

t.test('a bad test file: every problem as file:line:col, no case run, exit 1', async (t) => {
  const file = tempFile(
    'bad.test.yaml',
    `tokens:
  admin: { sub: alice }
cases:
  - { request: GET /admin/users, token: admn, expect: allow }
  - { request: /admin/users, expect: 401 }
  - request: GET /x
    expcet: 401
  - { request: GET /x, expect: 200 }
  - { request: GET /x, expect: denied, upstream: billing }
  - { request: GET /x, expect: 404, route: nope }
`,
  )
  const res = await jwtgateTest(POLICY, file)
  t.equal(res.status, 1)
  t.equal(res.stdout, '', 'no case runs')
  // Structure first, like the policy loader: the schema problems, then (once it is sound) the rest.
  t.same(res.stderr.trimEnd().split('\n'), [
    `${file}:5:16 cases[1].request must be a method and a request path, as in "GET /api/orders"`,
    `${file}:6:5 missing required field "expect" in cases[2]`,
    `${file}:7:5 unknown field "expcet" in cases[2] (did you mean "expect"?)`,
    '3 problems in the test file; no case was run',
  ])

  const fixed = tempFile(
    'bad.test.yaml',
    `tokens:
  admin: { sub: alice }
cases:
  - { request: GET /admin/users, token: admn, expect: allow }
  - { request: GET /x, expect: 200 }
  - { request: GET /x, expect: denied, upstream: billing }
  - { request: GET /x, expect: 404, route: nope }
`,
  )
  const again = await jwtgateTest(POLICY, fixed)
  t.equal(again.status, 1)
  t.same(again.stderr.trimEnd().split('\n'), [
    `${fixed}:4:41 unknown token "admn" (known: admin)`,
    `${fixed}:5:32 cases[1].expect must be allow or a status the gateway answers with (400, 401, 403, 404, 503), not 200; write allow for a request the gateway lets through`,
    `${fixed}:6:32 cases[2].expect "denied" is neither allow nor a reason code (bad_path, bad_host, no_route, multiple_tokens, missing_token, malformed, token_too_large, wrong_issuer, bad_algorithm, unknown_kid, keys_unavailable, bad_signature, expired, not_yet_valid, issued_in_future, wrong_audience, invalid_claims, insufficient_claims, revoked, replayed, revocation_unavailable, wrong_type, identity_too_large, cors_rejected, https_required, body_too_large, invalid_dpop_proof, use_dpop_nonce, proof_replayed, proof_replay_unavailable, binding_mismatch, unbound_token, headers_too_large)`,
    `${fixed}:6:50 unknown upstream "billing" (known: orders, partners)`,
    `${fixed}:7:44 unknown route "nope" (known: /public/**, admin, /partner/**, *.example.com/api/**, /tree/**, /opt/**, /report/**, /payload/**)`,
    '5 problems in the test file; no case was run',
  ])

  const syntax = await jwtgateTest(POLICY, tempFile('syntax.test.yaml', 'cases:\n  - { request: GET /x, expect: 401\n'))
  t.equal(syntax.status, 1)
  t.match(syntax.stderr, /syntax\.test\.yaml:\d+:\d+ /)
  const notAMap = await jwtgateTest(POLICY, tempFile('list.test.yaml', '- { request: GET /x, expect: 401 }\n'))
  t.match(notAMap.stderr, /list\.test\.yaml:1:1 a test file is a map with cases \(a list\) and optional tokens/)
  const missing = await jwtgateTest(POLICY, '/nonexistent/policy.test.yaml')
  t.match(missing.stderr, /\/nonexistent\/policy\.test\.yaml:1:1 cannot read test file/)
})

t.test('a test file takes ${VAR} from the environment, as the policy does', async (t) => {
  const policyFile = tempFile(
    'policy.yaml',
    `version: 1
listen: { port: 8080 }
issuers:
  idp: { issuer: "\${IDP_ISSUER}", jwks_uri: "https://idp.example.com/jwks.json", audiences: [orders-api], algorithms: [RS256] }
upstreams:
  orders: { url: "http://127.0.0.1:3001" }
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [idp], claims: { team: { equals: "\${TEAM:-orders}" } } } }
`,
  )
  const file = tempFile(
    'policy.test.yaml',
    `tokens:
  alice: { iss: "\${IDP_ISSUER}", aud: orders-api, sub: alice, team: "\${TEAM:-orders}" }
cases:
  - { request: GET /api/a, token: alice, expect: allow }
  - { request: GET /api/a, token: { sub: bob, team: "$\${TEAM}" }, expect: insufficient_claims }
`,
  )
  const env = { IDP_ISSUER: 'https://idp.example.com/' }
  const res = await jwtgateTest(policyFile, file, env)
  t.equal(res.status, 0, res.stdout + res.stderr)
  t.match(res.stdout, /^ok   GET \/api\/a \[alice\] +allow → orders/)
  t.match(res.stdout, /\n2 passed, 0 failed\n$/)
  // A variable the test file needs and the environment lacks is a problem of the file, at its place.
  const other = tempFile('other.test.yaml', 'cases:\n  - { request: GET /api/a, token: { iss: "${OTHER_ISSUER}" }, expect: allow }\n')
  const missing = await jwtgateTest(policyFile, other, env)
  t.equal(missing.status, 1)
  t.same(missing.stderr.trimEnd().split('\n'), [`${other}:2:42 environment variable OTHER_ISSUER is not set`, '1 problem in the test file; no case was run'])
})

t.test('the jwtgate test command: config/example.test.yaml passes against config/example.yaml', async (t) => {
  // The command's wiring too: arguments, exit code, the case lines on stdout, and no network.
  const res = await jwtgate(['test', '-c', `${ROOT}config/example.yaml`, `${ROOT}config/example.test.yaml`], { INTERNAL_JWT_SECRET: 'x'.repeat(32) }, 30_000, [
    '--import',
    pathToFileURL(NO_NETWORK).href,
  ])
  t.equal(res.code, 0, res.stdout + res.stderr)
  t.match(res.stdout, /^\d+ passed, 0 failed\n$/m)
  t.notMatch(res.stdout, /FAIL/)
})

// The proxy and `jwtgate test` must agree: each request below is sent to a running gateway with
// a real signed token; its answers become the test file's expectations (the reason code for a
// denial, the identity headers the upstream received for an allow), and `jwtgate test` must
// pass them all, the inline claims getting iss and aud from the route's issuer.
t.test('jwtgate test agrees with the running gateway', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = policy({
    issuer: idp,
    upstream: up,
    routes: `
  - { path: /public/**, upstream: orders, auth: none }
  - { path: /admin/**, methods: [GET, POST], upstream: orders, auth: { issuers: [idp], claims: { roles: { contains: admin } } } }
  - { path: /write/**, upstream: orders, auth: { issuers: [idp], scopes: ["orders:write"] } }
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
  - path: /any/**
    upstream: orders
    auth: { any: [ { issuers: [idp], claims: { roles: { contains: admin } } }, { issuers: [idp], scopes: ["orders:admin"] } ] }
  - { path: /opt/**, upstream: orders, auth: { optional: true, issuers: [idp] } }
  - { path: /aud/**, upstream: orders, auth: { issuers: [idp], audiences: [admin-api] } }
  - { path: /fresh/**, upstream: orders, auth: { issuers: [idp], max_age: 10m, require_claims: [jti] } }
`,
  })
  const gw = await gateway(t, yaml)
  const requests: Array<{ request: string; claims?: Record<string, unknown> }> = [
    { request: 'GET /public/x' },
    { request: 'GET /admin/users' },
    { request: 'GET /admin/users', claims: { sub: 'alice', roles: ['admin'] } },
    { request: 'GET /admin/users', claims: { sub: 'bob', roles: ['reader'] } },
    { request: 'DELETE /admin/users', claims: { sub: 'alice', roles: ['admin'] } },
    { request: 'GET /public/../admin/users', claims: { sub: 'bob', roles: ['reader'] } },
    { request: 'GET /public/%2e%2e/admin/users?q=1', claims: { sub: 'alice', roles: ['admin', 'ops'] } },
    { request: 'GET /public/..%2fadmin' },
    { request: 'POST /write/orders', claims: { sub: 'svc', scope: 'orders:read' } },
    { request: 'POST /write/orders', claims: { sub: 'svc', scope: 'orders:read orders:write' } },
    { request: 'GET /api/orders/1', claims: { sub: 'carol', aud: 'billing-api' } },
    { request: 'GET /api/orders/1', claims: { sub: 42 } },
    { request: 'GET /nothing/here', claims: { sub: 'alice' } },
    { request: 'GET /any/x', claims: { sub: 'alice', roles: ['admin'] } },
    { request: 'GET /any/x', claims: { sub: 'bob', scope: 'orders:admin', roles: ['reader'] } },
    { request: 'GET /any/x', claims: { sub: 'bob', roles: ['reader'] } },
    { request: 'GET /opt/x' },
    { request: 'GET /opt/x', claims: { sub: 'dan', roles: ['r'] } },
    { request: 'GET /aud/x', claims: { sub: 'erin', aud: 'admin-api' } },
    { request: 'GET /aud/x', claims: { sub: 'erin', aud: 'orders-api' } },
    // Written with iat: the signer adds one, and max_age needs it offline too.
    { request: 'GET /fresh/x', claims: { sub: 'fay', jti: 'f1', iat: Math.floor(Date.now() / 1000) } },
    { request: 'GET /fresh/x', claims: { sub: 'fay', jti: 'f2', iat: Math.floor(Date.now() / 1000) - 3600 } },
    { request: 'GET /fresh/x', claims: { sub: 'fay' } },
  ]
  const statuses: number[] = []
  const cases: string[] = []
  for (const { request, claims } of requests) {
    const [method, target] = request.split(' ')
    const token = claims && idp.sign({ aud: 'orders-api', ...claims })
    const seen = up.received.length
    const res = await rawRequest(
      gw.port,
      `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}\r\n`,
    )
    statuses.push(res.status)
    let expect: string
    let headers = ''
    if (res.status === 200) {
      const received = up.received[seen]!.headers
      expect = 'allow'
      headers = `, headers: ${JSON.stringify({ 'x-user-id': received['x-user-id'] ?? null, 'x-user-roles': received['x-user-roles'] ?? null })}`
    } else {
      expect = (JSON.parse(res.body) as { error: string }).error
    }
    cases.push(`  - { request: "${request}", expect: ${expect}${claims ? `, token: ${JSON.stringify(claims)}` : ''}${headers} }`)
  }
  t.same(
    statuses,
    [200, 401, 200, 403, 404, 403, 200, 400, 403, 200, 401, 401, 404, 200, 200, 403, 200, 200, 200, 401, 200, 401, 401],
    'the gateway answers as this test assumes',
  )

  const res = await jwtgateTest(tempFile('policy.yaml', yaml), tempFile('agree.test.yaml', `cases:\n${cases.join('\n')}\n`))
  t.equal(res.status, 0, res.stdout + res.stderr)
  t.match(res.stdout, `${requests.length} passed, 0 failed`)
})
