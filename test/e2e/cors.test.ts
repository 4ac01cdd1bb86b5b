// CORS against real servers: the gateway answers preflights itself (no token, nothing forwarded)
// on routes with cors, adds the Access-Control-* headers to every answer of such a route
// (denials included), and leaves OPTIONS alone where no cors applies. Plus `jwtgate explain`
// and `jwtgate test`, which answer preflights through the same decide().
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { send } from '../hardening/raw.js'
import { jwtgate } from '../support/cli.js'
import { gateway, issuer, policy, policyProblems, tempFile, upstream } from '../support/harness.js'

const APP = 'https://app.example.com'
const CORS = `
cors:
  origins: [${APP}, "http://localhost:5173"]
  methods: [GET, PUT, POST]
  headers: [Authorization, Content-Type, X-Trace]
  expose_headers: [x-request-id]
  credentials: true
  max_age: 10m
`
const ROUTES = `
  - { path: /api/**, methods: [GET, PUT], upstream: orders, auth: { issuers: [idp] } }
  - { path: /open/**, upstream: orders, auth: none, cors: { origins: ["*"], methods: [GET] } }
  - { path: /own-cors/**, upstream: orders, auth: { issuers: [idp] }, cors: false }
`

function preflight(origin: string, method: string, headers = 'authorization') {
  return [['Origin', origin], ['Access-Control-Request-Method', method], ...(headers ? [['Access-Control-Request-Headers', headers] as const] : [])] as Array<
    [string, string]
  >
}

t.test('preflights are answered by the gateway on routes with cors', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, extra: CORS }))

  t.test('an allowed preflight: 204 with the rule, no token, nothing forwarded', async (t) => {
    const res = await send(gw.port, { method: 'OPTIONS', target: '/api/orders/7', headers: preflight(APP, 'PUT', 'authorization, content-type') })
    t.equal(res.status, 204)
    t.equal(res.headers['access-control-allow-origin'], APP)
    t.equal(res.headers['access-control-allow-credentials'], 'true')
    t.equal(res.headers['access-control-allow-methods'], 'GET, PUT, POST')
    t.equal(res.headers['access-control-allow-headers'], 'authorization, content-type, x-trace')
    t.equal(res.headers['access-control-max-age'], '600')
    t.match(res.headers.vary, /Origin/)
    t.equal(res.headers['www-authenticate'], undefined, 'no token was asked for')
    t.equal(up.received.length, 0, 'the upstream never saw it')
  })

  t.test('a preflight the rule does not allow: 403 cors_rejected, without Allow-Origin', async (t) => {
    for (const [what, headers, target] of [
      ['another origin', preflight('https://evil.example', 'GET')],
      ['an origin differing by a trailing slash', preflight(`${APP}/`, 'GET')],
      ['an origin differing in case', preflight('https://APP.example.com', 'GET')],
      ['the null origin', preflight('null', 'GET')],
      ['a header outside cors.headers', preflight(APP, 'GET', 'authorization, x-evil')],
      ['a method outside cors.methods (the route takes any)', preflight(APP, 'PUT', ''), '/open/x'],
    ] as const) {
      const res = await send(gw.port, { method: 'OPTIONS', target: target ?? '/api/x', headers: [...headers] })
      t.equal(res.status, 403, what)
      t.equal(JSON.parse(res.body).error, 'cors_rejected', what)
      t.equal(res.headers['access-control-allow-origin'], undefined, what)
      t.match(res.headers.vary, /Origin/, what)
    }
    const noRoute = await send(gw.port, { method: 'OPTIONS', target: '/api/x', headers: preflight(APP, 'DELETE') })
    t.equal(noRoute.status, 404, 'a method the route does not take: no route for the actual request, and OPTIONS has none either')
    t.equal(up.received.length, 0)
  })

  t.test('a preflight for a path no route matches is a 404 and reaches nothing', async (t) => {
    const res = await send(gw.port, { method: 'OPTIONS', target: '/nowhere', headers: preflight(APP, 'GET') })
    t.equal(res.status, 404)
    t.equal(JSON.parse(res.body).error, 'no_route')
    t.equal(up.received.length, 0)
  })

  t.test('without cors, OPTIONS is a request like any other', async (t) => {
    const res = await send(gw.port, { method: 'OPTIONS', target: '/own-cors/x', headers: preflight(APP, 'GET') })
    t.equal(res.status, 401, 'cors: false: the route wants a token, a preflight has none')
    t.equal(res.headers['access-control-allow-origin'], undefined)
    const token = idp.sign({ sub: 'alice', aud: 'orders-api' })
    const withToken = await send(gw.port, {
      method: 'OPTIONS',
      target: '/own-cors/x',
      headers: [...preflight(APP, 'GET'), ['Authorization', `Bearer ${token}`]],
    })
    t.equal(withToken.status, 200, 'with a token it is forwarded')
    t.equal(up.received.at(-1)!.method, 'OPTIONS')
    t.equal(up.received.at(-1)!.headers['access-control-request-method'], 'GET', 'the upstream answers for CORS there')
  })

  t.test('actual responses carry the headers, denials included', async (t) => {
    const token = idp.sign({ sub: 'alice', aud: 'orders-api' })
    let res = await send(gw.port, {
      target: '/api/x',
      headers: [
        ['Origin', APP],
        ['Authorization', `Bearer ${token}`],
      ],
    })
    t.equal(res.status, 200)
    t.equal(res.headers['access-control-allow-origin'], APP)
    t.equal(res.headers['access-control-allow-credentials'], 'true')
    t.equal(res.headers['access-control-expose-headers'], 'x-request-id')
    t.equal(res.headers['access-control-allow-methods'], undefined, 'preflight-only headers stay on preflights')
    t.match(res.headers.vary, /Origin/)

    res = await send(gw.port, { target: '/api/x', headers: [['Origin', APP]] })
    t.equal(res.status, 401)
    t.equal(res.headers['access-control-allow-origin'], APP, 'the page can read its 401')

    res = await send(gw.port, {
      target: '/api/x',
      headers: [
        ['Origin', 'https://evil.example'],
        ['Authorization', `Bearer ${token}`],
      ],
    })
    t.equal(res.status, 200, 'CORS is for browsers; the token is what lets a request through')
    t.equal(res.headers['access-control-allow-origin'], undefined, 'but no other origin may read the answer')
    t.match(res.headers.vary, /Origin/)

    res = await send(gw.port, { target: '/nowhere', headers: [['Origin', APP]] })
    t.equal(res.status, 404)
    t.equal(res.headers['access-control-allow-origin'], APP, 'an answer that matched no route gets the global rule')

    res = await send(gw.port, { target: '/open/x', headers: [['Origin', 'https://anyone.example']] })
    t.equal(res.headers['access-control-allow-origin'], '*', 'origins ["*"] answers *')
    t.equal(res.headers['access-control-allow-credentials'], undefined)
  })
})

t.test("the upstream's own CORS headers are replaced where the gateway answers for CORS", async (t) => {
  const idp = await issuer(t)
  const loose = createServer((_req, res) => {
    res.writeHead(200, { 'access-control-allow-origin': '*', 'access-control-allow-credentials': 'true', vary: 'Accept-Encoding' }).end('ok')
  })
  await new Promise<void>((resolve) => loose.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        loose.closeAllConnections()
        loose.close(() => resolve())
      }),
  )
  const url = `http://127.0.0.1:${(loose.address() as AddressInfo).port}`
  const gw = await gateway(t, policy({ issuer: idp, upstream: { url } as never, routes: ROUTES, extra: CORS }))
  const token = idp.sign({ sub: 'alice', aud: 'orders-api' })
  let res = await send(gw.port, {
    target: '/api/x',
    headers: [
      ['Origin', 'https://evil.example'],
      ['Authorization', `Bearer ${token}`],
    ],
  })
  t.equal(res.headers['access-control-allow-origin'], undefined, "the upstream's * does not open the route to every origin")
  t.equal(res.headers['access-control-allow-credentials'], undefined)
  t.equal(res.headers.vary, 'Accept-Encoding, Origin', 'Vary is added to, not replaced')
  res = await send(gw.port, {
    target: '/own-cors/x',
    headers: [
      ['Origin', 'https://evil.example'],
      ['Authorization', `Bearer ${token}`],
    ],
  })
  t.equal(res.headers['access-control-allow-origin'], '*', 'with cors: false the upstream answers for CORS itself')
})

t.test('cors settings that cannot work are refused at load', async (t) => {
  const doc = (cors: string) => `version: 1
listen: { port: 0 }
upstreams: { orders: { url: "http://127.0.0.1:1" } }
cors: ${cors}
routes: [ { path: /x, upstream: orders, auth: none } ]
`
  t.match(policyProblems(doc('{ origins: ["*"], credentials: true }')), [/^4:\d+ credentials: true cannot be used with origins: \["\*"\]; list the origins/])
  t.match(policyProblems(doc('{ origins: ["*", "https://a.example"] }')), [/"\*" allows every origin; it cannot be listed with others/])
  t.match(policyProblems(doc('{ origins: ["https://a.example/"] }')), [
    /"https:\/\/a\.example\/" is not an origin as browsers send it; write "https:\/\/a\.example"/,
  ])
  t.match(policyProblems(doc('{ origins: ["https://A.example:443"] }')), [/write "https:\/\/a\.example"/])
  t.match(policyProblems(doc('{ origins: ["null"] }')), [/the origin "null" .* cannot be allowed/])
  t.match(policyProblems(doc('{ origins: ["a.example"] }')), [/is not an origin such as https:\/\/app\.example\.com/])
  t.match(policyProblems(doc('{ origins: ["file:///x"] }')), [/is not an http\(s\) origin/])
  t.same(policyProblems(doc('{ origins: ["https://a.example", "http://localhost:5173"], credentials: true }')), [])
})

t.test('explain and test answer preflights as the gateway does', { jobs: 2 }, async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policy({ issuer: idp, upstream: up, routes: ROUTES, extra: CORS }))

  t.test('explain --origin --preflight', async (t) => {
    const allowed = await jwtgate([
      'explain',
      '-c',
      file,
      'OPTIONS',
      '/api/x',
      '--origin',
      APP,
      '--preflight',
      'PUT',
      '--preflight-headers',
      'authorization',
      '--json',
    ])
    t.equal(allowed.code, 0, allowed.stderr)
    const e = JSON.parse(allowed.stdout)
    t.match(e, { decision: 'allow', status: 204, preflight: true, upstream: null, route: { index: 0 } })
    t.equal(e.cors_headers['access-control-allow-origin'], APP)
    t.equal(e.cors_headers['access-control-max-age'], '600')
    const refused = await jwtgate(['explain', '-c', file, 'OPTIONS', '/api/x', '--origin', 'https://evil.example', '--preflight', 'GET'])
    t.equal(refused.code, 1)
    t.match(refused.stdout, /DENY 403 cors_rejected: the origin is not allowed by cors\.origins/)
    t.match(refused.stdout, /cors\s+vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers/)
  })

  t.test('test: preflight cases', async (t) => {
    const cases = tempFile(
      'cases.yaml',
      `cases:
  - request: OPTIONS /api/x
    preflight: { origin: "${APP}", method: PUT, headers: [authorization] }
    expect: allow
  - request: OPTIONS /api/x
    preflight: { origin: "https://evil.example", method: PUT }
    expect: cors_rejected
  - request: OPTIONS /nowhere
    preflight: { origin: "${APP}", method: GET }
    expect: no_route
  - request: OPTIONS /own-cors/x
    preflight: { origin: "${APP}", method: GET }
    expect: missing_token
`,
    )
    const run = await jwtgate(['test', '-c', file, cases])
    t.equal(run.code, 0, run.stdout + run.stderr)
    t.match(run.stdout, /ok\s+OPTIONS \/api\/x \[preflight PUT from https:\/\/app\.example\.com\]\s+allow → preflight answered by the gateway \(204\)/)
    t.match(run.stdout, /4 passed, 0 failed/)
  })
})
