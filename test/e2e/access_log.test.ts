// `log.access`: the access line of each request can be turned off without losing the other logs,
// and a client-chosen request id or path cannot break the JSON of the line.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { API_ROUTE, bearer, gateway, get, issuer, policy, rawGet, upstream } from '../support/harness.js'

const ROUTES = API_ROUTE

t.test('log.access: false writes no access line; the other info lines stay', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, extra: 'log: { access: false }' }))
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign({ sub: 'alice', aud: 'orders-api' })))).status, 200)
  t.equal((await get(`${gw.url}/api/x`)).status, 401)
  t.equal(gw.logs.lines.filter((l) => l.msg === 'request').length, 0, 'no access line')
  t.ok(
    gw.logs.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('jwtgate listening')),
    'start-up still logged',
  )

  // A reload turns it back on, from the next request.
  writeFileSync(gw.gateway.policy.file, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  t.ok(await gw.reload())
  t.equal((await get(`${gw.url}/api/x`)).status, 401)
  t.match(
    gw.logs.lines.filter((l) => l.msg === 'request'),
    [{ status: 401, reason: 'missing_token' }],
  )
})

t.test('the access line stays one valid JSON line whatever the client sends', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  // A request id is only kept when it looks like one; a quote or backslash in the path is escaped.
  await rawGet(gw.port, '/api/a"b\\\\c/%22', { 'X-Request-Id': 'id"with-quote' })
  await rawGet(gw.port, '/api/ok', { 'X-Request-Id': 'trace-1234' })
  const lines = gw.logs.lines.filter((l) => l.msg === 'request')
  t.equal(lines.length, 2, 'every line parsed as JSON (LogCapture throws otherwise)')
  t.not(lines[0]!.request_id, 'id"with-quote', 'an unlikely request id is replaced')
  t.match(lines[0], { status: 400, reason: 'bad_path' })
  t.equal(lines[0]!.path, '/api/a"b\\\\c/%22', 'the raw path, quote and backslashes escaped in the JSON')
  t.equal(lines[1]!.request_id, 'trace-1234')
})
