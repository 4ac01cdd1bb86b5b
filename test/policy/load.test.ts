// A bad policy never starts: every problem is reported as file:line:col message.
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { createLogger } from '../../src/log.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicyDraft, parsePolicySource } from '../../src/policy/load.js'
import { PolicyError, formatProblem } from '../../src/policy/problems.js'
import { loadPolicy } from '../../src/server.js'
import { tempFile } from '../support/harness.js'

const silent = createLogger('silent')

function problems(yaml: string, env: Record<string, string> = {}): string[] {
  try {
    const policy = compilePolicy(parsePolicyDraft('policy.yaml', yaml, env), silent)
    for (const issuer of policy.issuers.values()) issuer.stop()
    return []
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    return err.problems.map(formatProblem)
  }
}

const GOOD = `version: 1
listen: { host: 127.0.0.1, port: 8080 }
issuers:
  idp:
    issuer: https://idp.example.com/
    jwks_uri: https://idp.example.com/.well-known/jwks.json
    audiences: [orders-api]
    algorithms: [RS256]
upstreams:
  orders: { url: "http://127.0.0.1:3001", timeout: 15s }
routes:
  - path: /api/**
    upstream: orders
    auth: { issuers: [idp] }
`

t.test('a good policy compiles', async (t) => {
  t.same(problems(GOOD), [])
})

t.test('an alias to no anchor (an unquoted *.example.com) is reported where it is, with the fix', async (t) => {
  t.same(problems(GOOD.replace('  - path: /api/**', '  - path: /api/**\n    host: *.example.com')), [
    'policy.yaml:13:11 *.example.com refers to no anchor; a value that starts with * or & must be quoted ("*.example.com")',
  ])
  t.same(problems(GOOD.replace('  - path: /api/**', '  - path: /api/**\n    host: "*.example.com"')), [], 'quoted, it is a host pattern')
})

t.test('config/example.yaml and config/demo.yaml are valid', async (t) => {
  for (const name of ['example.yaml', 'demo.yaml']) {
    const file = fileURLToPath(new URL(`../../config/${name}`, import.meta.url))
    const env = {
      INTERNAL_JWT_SECRET: 'x'.repeat(32),
      DEMO_ISSUER: 'http://127.0.0.1:1/',
      DEMO_JWKS_URI: 'http://127.0.0.1:1/jwks',
      DEMO_UPSTREAM: 'http://127.0.0.1:2',
      DEMO_GRPC_UPSTREAM: 'http://127.0.0.1:3',
    }
    const policy = loadPolicy(file, silent, env)
    for (const issuer of policy.issuers.values()) issuer.stop()
    t.ok(policy.routes, name)
  }
})

t.test('unknown field, with position and a suggestion', async (t) => {
  const out = problems(GOOD.replace('    audiences:', '    audience: [x]\n    audiences:'))
  t.same(out, ['policy.yaml:7:5 unknown field "audience" in issuers.idp (did you mean "audiences"?)'])
})

t.test('unknown issuer and upstream referenced by a route', async (t) => {
  const out = problems(GOOD.replace('upstream: orders\n    auth: { issuers: [idp] }', 'upstream: billing\n    auth: { issuers: [idp, other] }'))
  t.same(out, ['policy.yaml:13:15 unknown upstream "billing" (known: orders)', 'policy.yaml:14:28 unknown issuer "other" (known: idp)'])
})

t.test('bad duration, unsupported alg and "none"', async (t) => {
  const out = problems(GOOD.replace('timeout: 15s', 'timeout: 15 seconds').replace('algorithms: [RS256]', 'algorithms: [RS256, none, HS257]'))
  t.equal(out.length, 3)
  t.match(out[0], /^policy\.yaml:8:25 issuers\.idp\.algorithms\[1\] must be one of: RS256, /)
  t.match(out[1], /^policy\.yaml:8:31 issuers\.idp\.algorithms\[2\] must be one of/)
  t.match(out[2], /^policy\.yaml:10:52 upstreams\.orders\.timeout must be a duration such as 500ms, 30s, 10m or 1h/)
})

t.test('a missing environment variable', async (t) => {
  const yaml = GOOD.replace('issuer: https://idp.example.com/', 'issuer: ${IDP_ISSUER}')
  t.same(problems(yaml), ['policy.yaml:5:13 environment variable IDP_ISSUER is not set'])
  t.same(problems(yaml, { IDP_ISSUER: 'https://idp.example.com/' }), [])
  t.same(problems(GOOD.replace('listen: { host: 127.0.0.1, port: 8080 }', 'listen:\n  port: ${PORT:-9000}')), [], 'a default, typed as a number')
  t.match(problems(GOOD.replace('port: 8080', 'port: ${PORT:-9000}')), [/put a value that uses \$\{\.\.\.\} in quotes/], 'a hint for ${} inside a flow map')
})

t.test('a route unreachable behind an earlier one', async (t) => {
  const out = problems(
    GOOD +
      `  - path: /api/orders/*
    methods: [GET]
    upstream: orders
    auth: none
`,
  )
  t.same(out, ['policy.yaml:15:11 route is unreachable: routes[0] (/api/**) matches every request it would'])
})

t.test('every problem of a file in one run: environment, fields, references and unreachable routes', async (t) => {
  const yaml =
    GOOD.replace('issuer: https://idp.example.com/', 'issuer: ${IDP_ISSUER}').replace('port: 8080', 'port: "${PORT}"') +
    `  - path: /api/orders/*
    upstream: orders
    auth: none
  - path: /billing/**
    upstream: billing
    auth: none
  - path: /x
    upstream: orders
    auth: none
    methds: [GET]
`
  t.same(problems(yaml), [
    'policy.yaml:2:34 environment variable PORT is not set',
    'policy.yaml:5:13 environment variable IDP_ISSUER is not set',
    'policy.yaml:24:5 unknown field "methds" in routes[3] (did you mean "methods"?)',
    'policy.yaml:19:15 unknown upstream "billing" (known: orders)',
    'policy.yaml:15:11 route is unreachable: routes[0] (/api/**) matches every request it would',
  ])
})

t.test('a section with a problem of its own is not reported again by what uses it', async (t) => {
  // A schema problem in the issuer, a meaning problem in the upstream: the route uses both.
  const broken = GOOD.replace('algorithms: [RS256]', 'algorithms: [RS256, none]').replace('url: "http://127.0.0.1:3001"', 'url: "ftp://127.0.0.1:3001"')
  t.same(problems(broken), [
    'policy.yaml:8:25 issuers.idp.algorithms[1] must be one of: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512',
    'policy.yaml:10:18 upstream url "ftp://127.0.0.1:3001" is not an http(s) URL',
  ])
  // A route with a problem of its own still shadows, and is shadowed, in the same run.
  const routes =
    GOOD.replace('upstream: orders\n    auth: { issuers: [idp] }', 'upstream: billing\n    auth: { issuers: [idp] }') +
    '  - path: /api/a\n    upstream: orders\n    auth: none\n'
  t.same(problems(routes), [
    'policy.yaml:13:15 unknown upstream "billing" (known: orders)',
    'policy.yaml:15:11 route is unreachable: routes[0] (/api/**) matches every request it would',
  ])
  // A required section broken as a whole stops there: every route would name it.
  t.same(problems(GOOD.replace('upstreams:\n  orders: { url: "http://127.0.0.1:3001", timeout: 15s }', 'upstreams: []')), [
    'policy.yaml:9:12 upstreams must be object',
  ])
})

t.test('HMAC algorithms with a JWKS, asymmetric with a secret, short secrets', async (t) => {
  t.match(problems(GOOD.replace('algorithms: [RS256]', 'algorithms: [RS256, HS256]')), [/HS256 cannot be used with a jwks_uri/])
  const secretIssuer = GOOD.replace('jwks_uri: https://idp.example.com/.well-known/jwks.json', 'secret: ${S}')
  t.match(problems(secretIssuer, { S: 'x'.repeat(40) }), [/accepts only HS256, HS384 or HS512/])
  t.match(problems(secretIssuer.replace('[RS256]', '[HS256]'), { S: 'short' }), [/at least 32 bytes/])
  t.same(problems(secretIssuer.replace('[RS256]', '[HS256]'), { S: 'x'.repeat(32) }), [])
  // The path is named; the route that uses the issuer is not told it is unknown.
  t.same(problems(GOOD.replace('jwks_uri: https://idp.example.com/.well-known/jwks.json', 'secret_file: /nonexistent/secret').replace('[RS256]', '[HS256]')), [
    'policy.yaml:6:18 cannot read secret_file /nonexistent/secret: ENOENT',
  ])
  const file = tempFile('secret', 'y'.repeat(48) + '\n')
  t.same(problems(GOOD.replace('jwks_uri: https://idp.example.com/.well-known/jwks.json', `secret_file: ${file}`).replace('[RS256]', '[HS384]')), [])
})

t.test('every problem is listed, not just the first', async (t) => {
  const out = problems(GOOD.replace('version: 1', 'version: 2').replace('port: 8080', 'port: http').replace('auth: { issuers: [idp] }', 'auth: nope'))
  t.equal(out.length, 3)
  t.match(out.join('\n'), /version must be 1/)
  t.match(out.join('\n'), /listen\.port must be integer/)
  t.match(out.join('\n'), /routes\[0\]\.auth must be "none" or an object/)
})

t.test('YAML syntax errors and duplicate keys', async (t) => {
  t.match(problems('version: 1\nlisten: [\n'), [/^policy\.yaml:\d+:\d+ /])
  t.match(problems(GOOD.replace('upstreams:', 'upstreams:\n  orders: { url: "http://127.0.0.1:1" }')), [/^policy\.yaml:11:3 .*[Uu]nique/])
})

t.test('YAML slips get a hint in their own words, at the line to fix', async (t) => {
  // One space too many: the parser complains about the line above, in the words of its grammar.
  t.same(problems(GOOD.replace('    upstream: orders', '     upstream: orders')), [
    'policy.yaml:13:6 "upstream" is indented more than "path" on line 12, which has its value on that line; a field beside "path" starts at column 5',
  ])
  t.same(problems(GOOD.replace('    audiences: [orders-api]', '     audiences: [orders-api]')), [
    'policy.yaml:7:6 "audiences" is indented more than "jwks_uri" on line 6, which has its value on that line; a field beside "jwks_uri" starts at column 5',
  ])
  // A tab is the problem, not ${…}: no word about quotes.
  t.same(problems(GOOD.replace('    issuer: https://idp.example.com/', '\tissuer: ${IDP_ISSUER}'), { IDP_ISSUER: 'x' }), [
    'policy.yaml:5:1 Tabs are not allowed as indentation; indent with spaces',
  ])
  t.same(problems(GOOD.replace('auth: { issuers: [idp] }', 'auth: { issuers: [idp], scopes: orders:write }')), [
    'policy.yaml:14:37 routes[0].auth.scopes must be a list, as in scopes: [orders:write]',
  ])
  // claims one step out of auth, beside it in the route.
  t.same(problems(GOOD.replace('auth: { issuers: [idp] }', 'auth:\n      issuers: [idp]\n    claims: { roles: { contains: admin } }')), [
    'policy.yaml:16:5 unknown field "claims" in routes[0] (claims goes inside auth: indent it under auth:)',
  ])
})

t.test('identity headers may not name headers the gateway owns', async (t) => {
  t.match(problems(GOOD.replace('routes:', 'identity_headers: { authorization: sub, x-ok: sub }\nroutes:')), [/authorization cannot carry a claim/])
})

t.test('map keys are checked, and so are the entries under a bad key', async (t) => {
  const out = problems(
    GOOD.replace(
      '  orders: { url: "http://127.0.0.1:3001", timeout: 15s }',
      '  orders: { url: "http://127.0.0.1:3001", timeout: 15s }\n  "my upstream": { url: "http://127.0.0.1:1", timeout: 15 seconds }',
    ),
  )
  t.match(out.join('\n'), /upstreams has an invalid name "my upstream"/)
  t.match(out.join('\n'), /upstreams\.my upstream\.timeout must be a duration/)
  t.match(problems(GOOD.replace('routes:', 'identity_headers: { "x user": sub }\nroutes:')).join('\n'), /identity_headers has an invalid name "x user"/)
})

t.test('a value from ${VAR} is never parsed as YAML', async (t) => {
  const yaml = GOOD.replace('jwks_uri: https://idp.example.com/.well-known/jwks.json', 'secret: ${S}').replace('[RS256]', '[HS256]')
  for (const secret of [
    '12345678901234567890123456789012',
    '@starts-with-at-and-is-long-enough!!',
    '[bracket] and # hash ' + 'x'.repeat(20),
    "'quoted-and-long-enough-to-be-a-secret",
  ]) {
    t.same(problems(yaml, { S: secret }), [], JSON.stringify(secret))
  }
  const source = parsePolicySource('policy.yaml', yaml, { S: 'abc #tail ' + 'y'.repeat(30) })
  t.equal(source.document.issuers!.idp!.secret, 'abc #tail ' + 'y'.repeat(30), 'kept whole')
})

t.test('header names and prefixes the gateway owns are refused in any spelling', async (t) => {
  t.match(problems(GOOD.replace('routes:', 'identity_headers: { x_forwarded_for: sub }\nroutes:')), [/x_forwarded_for cannot carry a claim/])
  t.match(problems(GOOD.replace('routes:', 'strip_header_prefixes: [auth]\nroutes:')), [/prefix "auth" would strip authorization/])
  t.match(problems(GOOD.replace('routes:', 'strip_header_prefixes: [x-forwarded]\nroutes:')), [/would strip x-forwarded-for/])
})

t.test('identity headers may not name a hop-by-hop header, which forwarding would drop', async (t) => {
  for (const name of ['proxy-connection', 'http2-settings', 'Proxy_Connection', 'HTTP2_Settings']) {
    t.match(problems(GOOD.replace('routes:', `identity_headers: { ${name}: sub }\nroutes:`)), [new RegExp(`${name} cannot carry a claim`)], name)
  }
  t.match(problems(GOOD.replace('routes:', 'forward_payload_header: http2_settings\nroutes:')), [/http2_settings cannot carry the token payload/])
  t.match(
    problems(GOOD.replace('routes:', 'identity_headers: { x-original-url: sub }\nroutes:')),
    [/x-original-url cannot carry a claim/],
    'nor a path override',
  )
})

t.test('URLs are parsed', async (t) => {
  t.match(problems(GOOD.replace('url: "http://127.0.0.1:3001"', 'url: "ftp://127.0.0.1"')), [/upstream url "ftp:\/\/127.0.0.1" is not an http\(s\) URL/])
  t.match(problems(GOOD.replace('url: "http://127.0.0.1:3001"', 'url: "HTTP://127.0.0.1:3001"')), [])
  t.match(problems(GOOD.replace('jwks_uri: https://idp.example.com/.well-known/jwks.json', 'jwks_uri: idp.example.com/jwks')), [/is not an http\(s\) URL/])
})

t.test('JWKS settings that cannot work are refused', async (t) => {
  t.match(problems(GOOD.replace('jwks_uri: https://idp.example.com/.well-known/jwks.json', 'jwks_uri: "https://"')), [/is not an http\(s\) URL/])
  t.match(problems(GOOD.replace('algorithms: [RS256]', 'algorithms: [RS256]\n    jwks: { min_age: 20m, max_age: 10m }')), [
    /min_age .* is more than jwks.max_age/,
  ])
  t.match(problems(GOOD.replace('algorithms: [RS256]', 'algorithms: [RS256]\n    jwks: { timeout: 0s }')), [/jwks.timeout must be more than 0/])
})

t.test('requirement trees: schema and meaning problems at their place', async (t) => {
  const route = (auth: string, extra = '') => GOOD.replace('    auth: { issuers: [idp] }\n', `${extra}    auth:\n${auth}`)
  t.same(
    problems(
      route(`      any:
        - { issuers: [idp], claim: { a: { equals: 1 } } }
        - { issuers: [idp], optional: true }
        - nope
`),
    ),
    [
      'policy.yaml:16:29 unknown field "claim" in routes[0].auth.any[0] (did you mean "claims"?)',
      'policy.yaml:17:29 unknown field "optional" in routes[0].auth.any[1]',
      'policy.yaml:18:11 routes[0].auth.any[2] must be a requirement: issuers (with optional audiences, claims, scopes, require_claims, max_age, typ), or any or all of requirements',
    ],
  )
  t.same(problems(route('      { issuers: [idp], max_age: 5 minutes, typ: [] }\n')), [
    'policy.yaml:15:34 routes[0].auth.max_age must be a duration such as 500ms, 30s, 10m or 1h, or a number of seconds',
    'policy.yaml:15:50 routes[0].auth.typ must be the accepted token header typ (such as at+jwt), or a list of them',
  ])
  t.same(
    problems(
      route(`      all:
        - { issuers: [idp], claims: { email: { matches: "[a-z" }, roles: { matches: "(a)\\\\1" } } }
        - { any: [ { issuers: [idp], require_claims: [jti] } ], scopes: [x] }
`),
    ),
    [
      'policy.yaml:16:57 invalid regular expression "[a-z": Unterminated character class',
      'policy.yaml:16:85 regular expression "(a)\\\\1" is refused: it cannot run in linear time (no backreferences or lookaround); RE2: invalid escape sequence: `\\1`',
      'policy.yaml:17:73 scopes belongs to a requirement with issuers; with any, put it in each requirement of the list',
    ],
  )
  t.same(problems(route('      { any: [ { issuers: [idp] }, { issuers: [other] } ] }\n')), ['policy.yaml:15:48 unknown issuer "other" (known: idp)'])
})

t.test('mode, identity_headers and forward_payload_header: problems at their place', async (t) => {
  t.same(
    problems(
      GOOD.replace(
        '    auth: { issuers: [idp] }\n',
        '    mode: report\n    identity_headers: { x-user-email: email }\n    forward_payload_header: x-jwt-payload\n    auth: none\n',
      ),
    ),
    [
      'policy.yaml:14:11 mode: report needs a token to report on: the route has auth: none',
      'policy.yaml:15:23 identity_headers needs a token: the route has auth: none',
      'policy.yaml:16:29 forward_payload_header needs a token: the route has auth: none',
    ],
  )
  t.same(problems(GOOD.replace('    auth: { issuers: [idp] }\n', '    mode: enforce\n    auth: none\n')), [], 'mode: enforce is the default anyway')
  t.same(problems(GOOD.replace('routes:', 'identity_headers: { x-user-id: sub }\nforward_payload_header: X_User_Id\nroutes:')), [
    'policy.yaml:12:25 X_User_Id is also an identity header; give the payload a header of its own',
  ])
  t.same(
    problems(
      GOOD.replace('    auth: { issuers: [idp] }\n', '    forward_payload_header: Cookie\n    identity_headers: { host: sub }\n    auth: { issuers: [idp] }\n'),
    ),
    [
      'policy.yaml:15:31 host cannot carry a claim: the gateway or the protocol owns it',
      'policy.yaml:14:29 Cookie cannot carry the token payload: the gateway or the protocol owns it',
    ],
  )
  t.same(problems(GOOD.replace('    auth: { issuers: [idp] }\n', '    forward_payload_header: Cookie\n    auth: { issuers: [idp] }\n')), [
    'policy.yaml:14:29 Cookie cannot carry the token payload: the gateway or the protocol owns it',
  ])
  t.same(
    problems(
      GOOD.replace('routes:', 'forward_payload_header: x-claims\nroutes:').replace(
        '    auth: { issuers: [idp] }\n',
        '    identity_headers: { x-claims: sub }\n    auth: { issuers: [idp] }\n',
      ),
    ),
    ["policy.yaml:15:23 x-claims is the policy's forward_payload_header; give the identity header another name"],
  )
  t.match(problems(GOOD.replace('routes:', 'identity_header_max_bytes: 8\nroutes:')), [/identity_header_max_bytes must be >= 16/])
})

const JWKS = 'jwks_uri: https://idp.example.com/.well-known/jwks.json'
const ROUTE_AUTH = 'auth: { issuers: [idp] }'

t.test('token sources: one place each, never what the gateway owns, never on auth: none', async (t) => {
  const issuerSources = (list: string) => problems(GOOD.replace('algorithms: [RS256]', `algorithms: [RS256]\n    token_sources: ${list}`))
  t.same(issuerSources('[{ header: Authorization }, { cookie: session }, { query: access_token }, { header: X-Token, prefix: "" }]'), [])
  // The route naming the broken issuer is not told it is unknown: its problem is said once, where it is.
  t.same(issuerSources('[{ header: X-Token, cookie: session }]'), [
    'policy.yaml:9:21 a token source names exactly one of header, cookie or query (found header, cookie)',
  ])
  t.match(issuerSources('[{ prefix: "Bearer " }]'), [/names exactly one of header, cookie or query$/])
  t.match(issuerSources('[{ cookie: session, prefix: "x" }]'), [/prefix goes with header/])
  t.match(issuerSources('[{ header: Cookie }]'), [/Cookie cannot carry a token: the gateway or the protocol owns it \(use \{ cookie: <name> \}\)/])
  t.match(issuerSources('[{ header: Host }]'), [/Host cannot carry a token/])
  t.match(issuerSources('[{ cookie: "a b" }]'), [/token_sources\[0\]\.cookie must be a cookie name/])
  t.match(issuerSources('[{ cookie: s }, { cookie: s }]'), [/policy.yaml:9:36 the s cookie is already a token source/])
  t.match(issuerSources('[{ header: authorization }, { header: Authorization, prefix: "JWT " }]'), [/the Authorization header is already a token source/])
  t.match(problems(GOOD.replace(ROUTE_AUTH, `${ROUTE_AUTH}\n    token_sources: [{ query: t }, { query: t }]`)), [
    /policy.yaml:15:35 the t query parameter is already a token source/,
  ])
  t.match(problems(GOOD.replace(ROUTE_AUTH, 'auth: none\n    token_sources: [{ query: t }]')), [/token_sources needs a token: the route has auth: none/])
  // The extractor keeps one bit per header source in a 32-bit number.
  const headers = (n: number) => `[${Array.from({ length: n }, (_, i) => `{ header: X-Token-${i} }`).join(', ')}]`
  t.same(problems(GOOD.replace(ROUTE_AUTH, `${ROUTE_AUTH}\n    token_sources: ${headers(30)}`)), [])
  t.match(problems(GOOD.replace(ROUTE_AUTH, `${ROUTE_AUTH}\n    token_sources: ${headers(31)}`)), [/a route reads tokens from at most 30 headers/])
  // Two issuers reading one header differently cannot share a route.
  const two = GOOD.replace(
    'upstreams:',
    `  other:
    issuer: other
    ${JWKS}
    audiences: [orders-api]
    algorithms: [RS256]
    token_sources: [{ header: Authorization, prefix: "JWT " }]
upstreams:`,
  )
  t.same(problems(two), [], 'each on its own route is fine')
  t.match(problems(two.replace(ROUTE_AUTH, 'auth: { issuers: [idp, other] }')), [
    /issuers idp and other read the Authorization header with different prefixes \("bearer " and "jwt "\)/,
  ])
  t.same(problems(two.replace(ROUTE_AUTH, 'auth: { issuers: [idp, other] }\n    token_sources: [{ cookie: s }]')), [], 'unless the route says where it reads')
})

t.test('issuer spellings: aliases and multi-tenant templates map each iss to one issuer', async (t) => {
  const withIssuer = (lines: string) => problems(GOOD.replace('    issuer: https://idp.example.com/', lines))
  t.same(withIssuer('    issuer: https://accounts.google.com\n    issuer_aliases: [accounts.google.com]'), [])
  t.same(withIssuer('    issuer: https://login.microsoftonline.com/{tid}/v2.0\n    tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47]'), [])
  t.same(withIssuer('    issuer: https://login.microsoftonline.com/{tid}/v2.0'), [], 'any tenant is allowed (validate warns)')
  t.match(withIssuer('    issuer: https://idp.example.com/\n    tenants: [a]'), [/tenants goes with an issuer that has \{tid\} in it/])
  t.match(withIssuer('    issuer: https://x/{tid}/{tid}'), [/the issuer may contain \{tid\} once/])
  t.match(withIssuer('    issuer: "{tid}.example.com"'), [/cannot start with \{tid\}/])
  t.match(withIssuer('    issuer: https://x/{tid}/v2.0\n    tenants: [a/b]'), [/tenant "a\/b" cannot appear in an iss/])
  t.match(withIssuer('    issuer: https://x/{tid}/v2.0\n    issuer_aliases: [y]'), [/issuer_aliases cannot go with a multi-tenant issuer/])
  const second = (iss: string) =>
    GOOD.replace('upstreams:', `  other:\n    issuer: ${iss}\n    ${JWKS}\n    audiences: [a]\n    algorithms: [RS256]\nupstreams:`)
  t.match(problems(second('other').replace('    issuer: https://idp.example.com/', '    issuer: https://idp.example.com/\n    issuer_aliases: [other]')), [
    /issuer "other" is already configured as issuers.idp; one iss value must map to one issuer/,
  ])
  t.match(
    problems(
      second('https://login.microsoftonline.com/abc/v2.0').replace(
        '    issuer: https://idp.example.com/',
        '    issuer: https://login.microsoftonline.com/{tid}/v2.0',
      ),
    ),
    [
      'policy.yaml:10:13 issuer "https://login.microsoftonline.com/abc/v2.0" is also matched by issuers.idp (https://login.microsoftonline.com/{tid}/v2.0); one iss value must map to one issuer',
    ],
  )
  t.match(problems(second('https://x/{tid}/').replace('    issuer: https://idp.example.com/', '    issuer: https://x/{tid}/')), [
    /issuer "https:\/\/x\/\{tid\}\/" is already configured as issuers.idp/,
  ])
})

t.test('discovery: one exact https issuer (http on loopback), instead of jwks_uri', async (t) => {
  const discovery = (issuer: string) => problems(GOOD.replace('issuer: https://idp.example.com/', `issuer: "${issuer}"`).replace(JWKS, 'discovery: true'))
  t.same(discovery('https://idp.example.com/realms/demo'), [])
  t.same(discovery('http://127.0.0.1:8080/'), [])
  t.same(discovery('http://localhost:8080'), [])
  t.match(discovery('http://idp.example.com/'), [
    /discovery reads \{issuer\}\/\.well-known\/openid-configuration, but the issuer is not https \(http is accepted only on loopback\)/,
  ])
  t.match(discovery('accounts.google.com'), [/but the issuer is not a URL/])
  t.match(discovery('https://idp.example.com/?tenant=1'), [/without a query or fragment/])
  t.match(discovery('https://login.microsoftonline.com/{tid}/v2.0'), [/discovery needs one exact issuer; give a multi-tenant issuer its jwks_uri/])
  t.match(problems(GOOD.replace(JWKS, `${JWKS}\n    discovery: true`)), [
    /issuer needs exactly one key source: jwks_uri, discovery, secret, secret_file or secrets \(found jwks_uri, discovery\)/,
  ])
  t.same(problems(GOOD.replace(JWKS, `${JWKS}\n    discovery: false`)), [], 'discovery: false is no key source')
  t.match(problems(GOOD.replace(JWKS, 'discovery: true').replace('[RS256]', '[HS256]')), [/HS256 cannot be used with a discovery; HMAC issuers take a secret/])
})

t.test('audience_claim is a claim name; validate warns about an issuer open to every tenant', async (t) => {
  t.same(problems(GOOD.replace('audiences: [orders-api]', 'audiences: [orders-api]\n    audience_claim: client_id')), [])
  t.match(problems(GOOD.replace('audiences: [orders-api]', 'audiences: [orders-api]\n    audience_claim: ""')), [
    /audience_claim must NOT have fewer than 1 characters/,
  ])
  const { lintIssuers } = await import('../../src/policy/lint.js')
  const doc = parsePolicySource(
    'policy.yaml',
    GOOD.replace('issuer: https://idp.example.com/', 'issuer: https://login.microsoftonline.com/{tid}/v2.0'),
  ).document
  t.same(lintIssuers(doc.issuers), [
    {
      issuer: 'idp',
      message: 'issuers.idp accepts tokens of every tenant of https://login.microsoftonline.com/{tid}/v2.0; list tenants: to accept only yours',
    },
  ])
  t.same(lintIssuers(parsePolicySource('policy.yaml', GOOD).document.issuers), [])
})
