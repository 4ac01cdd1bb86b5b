// The access line: `log.access` turns it off without losing the other logs; a client-chosen
// request id or path cannot break its JSON; its fields for log pipelines (client address with
// trusted_proxies, user agent, byte counts, upstream status); `log.time` and `log.level_label`.
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

t.test('the access line: client address (trusted_proxies honoured), user agent, byte counts, upstream status', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const routes = `${ROUTES}\n  - { path: /open/**, upstream: orders, auth: none }`
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes }))
  const lines = () => gw.logs.lines.filter((l) => l.msg === 'request')

  // No trusted proxy: the connection is the client, whatever X-Forwarded-For claims.
  const longAgent = `agent/${'x'.repeat(400)}`
  const body = 'b'.repeat(1234)
  const res = await fetch(`${gw.url}/open/upload`, { method: 'POST', body, headers: { 'x-forwarded-for': '198.51.100.9', 'user-agent': longAgent } })
  const answer = Buffer.from(await res.arrayBuffer())
  t.equal(res.status, 200)
  t.match(lines().at(-1), {
    client_address: '127.0.0.1',
    user_agent: longAgent.slice(0, 256),
    request_bytes: 1234,
    response_bytes: answer.length,
    upstream_status: 200,
    upstream_ms: Number,
  })
  t.equal((lines().at(-1)!.user_agent as string).length, 256, 'the user agent is cut')

  // A refusal: no body read, the gateway's own answer counted, no upstream fields.
  const denied = await fetch(`${gw.url}/api/x`, { method: 'POST', body: 'ignored' })
  const deniedBody = Buffer.from(await denied.arrayBuffer())
  t.equal(denied.status, 401)
  const line = lines().at(-1)!
  t.match(line, { status: 401, request_bytes: 0, response_bytes: deniedBody.length })
  t.notOk('upstream_status' in line || 'upstream_ms' in line, 'no upstream fields when nothing was forwarded')

  // An upstream that answers with its own status: that status is logged.
  t.equal((await get(`${gw.url}/open/x`)).status, 200)
  t.equal(lines().at(-1)!.request_bytes, 0, 'a GET has no body')
})

t.test('behind a trusted proxy the access line names the address it forwarded for', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const routes = '  - { path: /open/**, upstream: orders, auth: none }'
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes, extra: 'trusted_proxies: [127.0.0.1]' }))
  t.equal((await get(`${gw.url}/open/x`, { 'x-forwarded-for': '192.0.2.1, 198.51.100.9' })).status, 200)
  t.equal(gw.logs.lines.filter((l) => l.msg === 'request').at(-1)!.client_address, '198.51.100.9', 'the hop the trusted proxy wrote')
  t.equal((await get(`${gw.url}/open/x`)).status, 200)
  t.equal(gw.logs.lines.filter((l) => l.msg === 'request').at(-1)!.client_address, '127.0.0.1', 'no header: the proxy itself')
})

t.test('log.time: iso and log.level_label: every line, the access line too, has an ISO time and a level name', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, extra: 'log: { time: iso, level_label: true }' }))
  t.equal((await get(`${gw.url}/api/x`)).status, 401)
  const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
  const access = gw.logs.lines.filter((l) => l.msg === 'request')
  t.equal(access.length, 1)
  for (const line of gw.logs.lines) {
    t.match(line.time, ISO, `${line.msg}: ISO-8601 time`)
    t.type(line.level, 'string', `${line.msg}: a level name`)
  }
  t.match(access[0], { level: 'info', status: 401, reason: 'missing_token' })
  t.ok(gw.logs.text.split('\n')[0]!.startsWith('{"level":"info","time":"'), 'the same order of fields as pino writes')
  t.ok(Math.abs(Date.parse(access[0]!.time as string) - Date.now()) < 60_000, 'the time is now')

  // Changing the format needs a restart: the reload says so, and lines keep their format.
  writeFileSync(gw.gateway.policy.file, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  t.ok(await gw.reload())
  t.ok(gw.logs.lines.some((l) => l.msg === 'log.time and log.level_label changes take effect at the next restart'))
  t.equal((await get(`${gw.url}/api/x`)).status, 401)
  t.match(gw.logs.lines.filter((l) => l.msg === 'request').at(-1), { level: 'info', time: ISO })
})

t.test('by default: a numeric level and epoch milliseconds, as before', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  t.equal((await get(`${gw.url}/api/x`)).status, 401)
  for (const line of gw.logs.lines) {
    t.type(line.level, 'number')
    t.type(line.time, 'number')
  }
})
