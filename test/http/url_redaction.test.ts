// No secret of a URL (user info, an API key in the query) reaches GET /config, a log line or
// /readyz: issue 16 item 6.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { eventually, gateway, issuer, upstream } from '../support/harness.js'

const PASSWORD = 'jwks-p@ss-word'
const API_KEY = 'jwks-api-key-0123'
const REDIS_PASSWORD = 'redis-query-pw'

t.test('a key set URL with credentials and an API key: hidden in /config, in info and warn log lines and in /readyz', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  // An IdP gateway that wants ?api_key= and serves the dev issuer's keys.
  const keys = createServer(async (req, res) => {
    if (!req.url?.includes(`api_key=${API_KEY}`)) return void res.writeHead(403).end()
    res.setHeader('content-type', 'application/json')
    res.end(await (await fetch(idp.jwksUri)).text())
  })
  await new Promise<void>((r) => keys.listen(0, '127.0.0.1', r))
  t.teardown(() => keys.close())
  const keysPort = (keys.address() as AddressInfo).port
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  keyed:
    issuer: ${idp.url}
    jwks_uri: "http://127.0.0.1:${keysPort}/keys?api_key=${API_KEY}&v=2"
    audiences: [orders-api]
    algorithms: [RS256]
  userinfo:
    issuer: https://other.example
    jwks_uri: "http://jwtgate:${PASSWORD}@127.0.0.1:${keysPort}/keys?client_secret=${API_KEY}"
    audiences: [orders-api]
    algorithms: [RS256]
    optional_at_startup: true
upstreams: { orders: { url: "${up.url}" } }
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [keyed] } }
  - { path: /other/**, upstream: orders, auth: { issuers: [userinfo] } }
`,
  )
  await eventually(
    'the keyed issuer loads its keys and the other fails',
    10_000,
    () => gw.logs.lines.some((l) => l.msg === 'key set loaded') && gw.logs.lines.some((l) => l.msg === 'key set fetch failed'),
  )
  const config = await (await fetch(`${gw.adminUrl}/config`)).text()
  const ready = await (await fetch(`${gw.adminUrl}/readyz`)).text()
  for (const [where, text] of [
    ['GET /config', config],
    ['the log', gw.logs.text],
    ['GET /readyz', ready],
  ] as const) {
    for (const secret of [PASSWORD, API_KEY, 'p@ss']) t.notOk(text.includes(secret), `${where} does not show ${secret}`)
  }
  t.match(config, `http://127.0.0.1:${keysPort}/keys?api_key=[redacted]&v=2`, '/config shows the rest of the URL')
  t.match(config, `http://[redacted]@127.0.0.1:${keysPort}/keys?client_secret=[redacted]`)
  const loaded = gw.logs.lines.find((l) => l.msg === 'key set loaded')!
  t.equal(loaded.jwks_uri, `http://127.0.0.1:${keysPort}/keys?api_key=[redacted]&v=2`, 'the info line names the URL, redacted')
  const failed = gw.logs.lines.find((l) => l.msg === 'key set fetch failed')!
  t.equal(failed.jwks_uri, `http://[redacted]@127.0.0.1:${keysPort}/keys?client_secret=[redacted]`, 'so does the warn line')
})

t.test('a Redis URL with ?password= and a password holding @: hidden in /config', async (t) => {
  const up = await upstream(t)
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams: { orders: { url: "${up.url}" } }
routes:
  - { path: /**, upstream: orders, auth: none }
revocation:
  backend: redis
  on_backend_unavailable: serve_stale
  redis: { url: "redis://default:a@b${REDIS_PASSWORD}@127.0.0.1:1/0?password=${REDIS_PASSWORD}&db=0", timeout: 100ms }
  admin_token: "${'t'.repeat(32)}"
`,
  ).catch((err: Error) => err)
  if (gw instanceof Error) {
    t.notOk(gw.message.includes(REDIS_PASSWORD), 'a start-up failure does not show it either')
    return
  }
  const config = await (await fetch(`${gw.adminUrl}/config`)).text()
  t.notOk(config.includes(REDIS_PASSWORD))
  t.match(config, 'redis://[redacted]@127.0.0.1:1/0?password=[redacted]&db=0')
  t.notOk(gw.logs.text.includes(REDIS_PASSWORD), 'nor the log')
})
