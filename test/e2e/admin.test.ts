// The admin listener, metrics, reloads and shutdown, against real servers.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { API_ROUTE, bearer, gateway, get, issuer, policy, sleep, tempFile, upstream } from '../support/harness.js'
import { startGateway } from '../../src/server.js'
import { LogCapture } from '../support/harness.js'

const API = API_ROUTE

t.test('health, readiness, metrics and config', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: API }).replace('identity_headers:', 'identity_headers:\n  x-tenant: tenant'))
  const admin = gw.adminUrl!
  t.same((await get(`${admin}/healthz`)).json, { status: 'ok' })
  const ready = await get(`${admin}/readyz`)
  t.equal(ready.status, 200)
  t.same(ready.json, { status: 'ready' })

  await get(`${gw.url}/api/x`, bearer(idp.sign({ sub: 'a', aud: 'orders-api' })))
  await get(`${gw.url}/api/x`)
  await get(`${gw.url}/api/x`, bearer(idp.sign({ sub: 'a', aud: 'other' })))
  const metrics = (await get(`${admin}/metrics`)).json as string
  t.match(metrics, /jwtgate_requests_total\{route="\/api\/\*\*",method="GET",status_class="2xx"\} 1/)
  t.match(metrics, /jwtgate_requests_total\{route="\/api\/\*\*",method="GET",status_class="4xx"\} 2/)
  t.match(metrics, /jwtgate_auth_failures_total\{route="\/api\/\*\*",reason="missing_token"\} 1/)
  t.match(metrics, /jwtgate_auth_failures_total\{route="\/api\/\*\*",reason="wrong_audience"\} 1/)
  t.match(metrics, /jwtgate_upstream_duration_seconds_count\{upstream="orders"\} 1/)
  t.match(metrics, /jwtgate_request_duration_seconds_count\{route="\/api\/\*\*"\} 3/)
  t.match(metrics, /jwtgate_jwks_fetches_total\{issuer="idp",result="ok"\} 1/)
  t.match(metrics, /jwtgate_jwks_keys\{issuer="idp"\} 1/)
  t.match(metrics, /jwtgate_jwks_last_success_age_seconds\{issuer="idp"\} \d/)
  t.match(metrics, /jwtgate_policy_info\{hash="[0-9a-f]{64}"\} 1/)
  t.match(metrics, /jwtgate_policy_reloads_total\{result="failure"\} 0/)
  // Both signed tokens: a token is cached once verified, before a route checks its audience.
  t.match(metrics, /jwtgate_token_cache_entries 2/)
  t.match(metrics, /process_resident_memory_bytes/)

  const config = (await get(`${admin}/config`)).json
  t.equal(config.hash, gw.gateway.policy.hash)
  t.equal(config.policy.issuers.idp.jwks_uri, idp.jwksUri)

  t.equal((await get(`${gw.url}/metrics`)).status, 404, 'the proxy port never serves admin paths')
  t.equal((await get(`${admin}/api/x`)).status, 404, 'the admin port never proxies')
})

t.test('/config never shows a secret', async (t) => {
  const up = await upstream(t)
  const secret = 'the-shared-secret-value-32-bytes-long'
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
issuers:
  internal: { issuer: internal, secret: "\${S}", audiences: [a], algorithms: [HS256] }
upstreams: { orders: { url: "${up.url}" } }
routes: [ { path: /x, upstream: orders, auth: { issuers: [internal] } } ]
`,
    { S: secret },
  )
  const res = await fetch(`${gw.adminUrl}/config`)
  const text = await res.text()
  t.notOk(text.includes(secret))
  t.equal(JSON.parse(text).policy.issuers.internal.secret, '[redacted]')
  t.notOk(gw.logs.text.includes(secret), 'nor does the log')
})

t.test('readiness waits for keys, unless the issuer is optional at start-up', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  idp.respond.status = 503
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: API, issuerExtra: '    jwks: { cooldown: 1s }' }))
  const res = await get(`${gw.adminUrl}/readyz`)
  t.equal(res.status, 503)
  t.match(res.json, { status: 'not_ready', reasons: [/issuer idp: no signing keys yet \(HTTP 503\)/] })
  idp.respond.status = 200
  let ready = false
  for (let i = 0; i < 60 && !ready; i++) {
    await sleep(100)
    ready = (await get(`${gw.adminUrl}/readyz`)).status === 200
  }
  t.ok(ready, 'ready once the keys arrive')

  const optional = await gateway(
    t,
    policy({ issuer: idp, upstream: up, routes: API, issuerExtra: '    optional_at_startup: true' }).replace(idp.jwksUri, 'http://127.0.0.1:9/nothing-here'),
  )
  t.equal((await get(`${optional.adminUrl}/readyz`)).status, 200)
})

t.test('reload: a good policy swaps in, a bad one keeps the old, unchanged issuers keep their keys', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const first = policy({ issuer: idp, upstream: up, routes: API })
  const file = tempFile('policy.yaml', first)
  const logs = new LogCapture()
  const gw = await startGateway({ policyFile: file, logDestination: logs, listen: { port: 0 }, admin: { port: 0 } })
  t.teardown(() => gw.close())
  const token = idp.sign({ sub: 'a', aud: 'orders-api' })
  t.equal((await get(`${gw.url}/api/x`, bearer(token))).status, 200)
  t.equal((await get(`${gw.url}/public/x`)).status, 404)
  const fetches = idp.fetches

  writeFileSync(file, first.replace('routes:', 'routes:\n  - { path: /public/**, upstream: orders, auth: none }'))
  t.equal(await gw.reload(), true)
  t.equal((await get(`${gw.url}/public/x`)).status, 200, 'the new route serves')
  t.equal((await get(`${gw.url}/api/x`, bearer(token))).status, 200)
  t.equal(idp.fetches, fetches, 'the unchanged issuer kept its keys: no refetch')

  const hash = gw.gateway.policy.hash
  writeFileSync(file, first.replace('upstream: orders', 'upstream: nowhere'))
  t.equal(await gw.reload(), false)
  t.equal(gw.gateway.policy.hash, hash, 'the old policy stays')
  t.equal((await get(`${gw.url}/public/x`)).status, 200)
  t.match(
    logs.lines.filter((l) => l.msg === 'policy reload rejected'),
    [{ problem: /policy\.yaml:\d+:\d+ unknown upstream "nowhere"/ }],
  )
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  t.match(metrics, /jwtgate_policy_reloads_total\{result="success"\} 1/)
  t.match(metrics, /jwtgate_policy_reloads_total\{result="failure"\} 1/)
})

t.test('reload: a request in flight finishes under the policy it started with', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const first = policy({ issuer: idp, upstream: up, routes: API })
  const file = tempFile('policy.yaml', first)
  const gw = await startGateway({ policyFile: file, logDestination: new LogCapture(), listen: { port: 0 }, admin: { port: 0 } })
  t.teardown(() => gw.close())
  up.delayMs = 500
  const inFlight = get(`${gw.url}/api/slow`, bearer(idp.sign({ sub: 'a', aud: 'orders-api' })))
  await sleep(100)
  writeFileSync(file, first.replace('x-user-id: sub', 'x-subject: sub'))
  t.equal(await gw.reload(), true)
  const res = await inFlight
  t.equal(res.status, 200)
  t.equal(res.json.headers['x-user-id'], 'a', 'identity headers of the old policy')
  up.delayMs = 0
  const after = await get(`${gw.url}/api/fast`, bearer(idp.sign({ sub: 'b', aud: 'orders-api' })))
  t.equal(after.json.headers['x-subject'], 'b', 'new requests use the new policy')
  t.equal(after.json.headers['x-user-id'], undefined)
})

t.test('shutdown: readiness turns 503 first, in-flight requests finish', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = policy({ issuer: idp, upstream: up, routes: '  - { path: /public/**, upstream: orders, auth: none }' }).replace(
    'routes:',
    'shutdown: { drain_delay: 300ms, timeout: 5s }\nroutes:',
  )
  const gw = await startGateway({ policyFile: tempFile('policy.yaml', yaml), logDestination: new LogCapture(), listen: { port: 0 }, admin: { port: 0 } })
  t.teardown(() => gw.close())
  up.delayMs = 600
  const inFlight = get(`${gw.url}/public/slow`)
  await sleep(100)
  const stopping = gw.shutdown()
  t.equal((await get(`${gw.adminUrl}/readyz`)).status, 503, 'not ready as soon as shutdown begins')
  up.delayMs = 0
  t.equal((await get(`${gw.url}/public/during-drain`)).status, 200, 'still accepting during the drain delay')
  t.equal((await inFlight).status, 200, 'the slow request completed')
  await stopping
  await t.rejects(fetch(`${gw.url}/public/after`), 'the listener is closed')
})

t.test('the last reload: a gauge 0/1 and its time, as Prometheus has for its own configuration; /config shows a refused one with its problems', async (t) => {
  const up = await upstream(t)
  const text = (path: string, target = 'orders') =>
    `version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nupstreams: { orders: { url: "${up.url}" } }\nroutes:\n  - { path: ${path}, upstream: ${target}, auth: none }\n`
  const file = tempFile('policy.yaml', text('/a/**'))
  const startedAt = Date.now() / 1000
  const gw = await startGateway({ policyFile: file, logDestination: new LogCapture() })
  t.teardown(() => gw.close())
  const scrape = async () => (await get(`${gw.adminUrl}/metrics`)).json as unknown as string
  const gauge = (metrics: string, name: string) => Number(new RegExp(`\\n${name} (\\S+)\\n`).exec(metrics)?.[1])
  let metrics = await scrape()
  t.equal(gauge(metrics, 'jwtgate_policy_last_reload_success'), 1, 'the start counts as a successful load')
  t.ok(gauge(metrics, 'jwtgate_policy_last_reload_timestamp_seconds') >= Math.floor(startedAt))
  t.equal((await get(`${gw.adminUrl}/config`)).json.last_reload, null, 'no reload yet')

  writeFileSync(file, text('/b/**', 'nowhere'))
  const before = Date.now() / 1000
  t.equal(await gw.reload(), false)
  metrics = await scrape()
  t.equal(gauge(metrics, 'jwtgate_policy_last_reload_success'), 0, 'stays 0 until a reload succeeds')
  t.ok(gauge(metrics, 'jwtgate_policy_last_reload_timestamp_seconds') >= Math.floor(before))
  const refused = (await get(`${gw.adminUrl}/config`)).json
  t.equal(refused.last_reload.result, 'failure')
  t.match(refused.last_reload.problems, [new RegExp(`^${file}:6:\\d+ unknown upstream "nowhere"`)])
  t.match(refused.policy.routes, [{ path: '/a/**' }], 'the policy shown is the one running')

  writeFileSync(file, text('/c/**'))
  t.equal(await gw.reload(), true)
  t.equal(gauge(await scrape(), 'jwtgate_policy_last_reload_success'), 1)
  const last = (await get(`${gw.adminUrl}/config`)).json.last_reload
  t.equal(last.result, 'success')
  t.notOk('problems' in last)
})
