// OpenTelemetry: with the standard OTEL_* variables set, the gateway exports one SERVER span per
// request and a CLIENT span for the upstream call, over OTLP/HTTP in protobuf, to a real receiver
// on 127.0.0.1 that decodes what it gets with the official generated code. The upstream receives
// the CLIENT span's context in traceparent; the SERVER span continues the client's. Gateways
// start from a YAML policy, as everywhere in test/e2e.
import t from 'tap'
import { createServer } from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { eventually, gateway, get, issuer, type LogCapture, upstream } from '../support/harness.js'
import { type ReceivedSpan, SpanKind, StatusCode, startOtlpReceiver } from '../support/otlp_receiver.js'

const receiver = await startOtlpReceiver()
t.teardown(() => receiver.close())
// Read by the SDK from process.env when a gateway starts (src/tracing/otel.ts).
const OTEL_ENV: Record<string, string> = {
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-key=collector-secret-1',
  OTEL_BSP_SCHEDULE_DELAY: '50',
  OTEL_SERVICE_NAME: 'orders-gateway',
  OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,service.name=overridden-by-OTEL_SERVICE_NAME',
}
Object.assign(process.env, OTEL_ENV)

const idp = await issuer(t)
const up = await upstream(t)
const dead = await closedPort()

/** A port nothing listens on: connections to it are refused. */
async function closedPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

const POLICY = `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp: { issuer: "${idp.url}", jwks_uri: "${idp.jwksUri}", audiences: [orders-api], algorithms: [RS256] }
upstreams:
  orders: { url: "${up.url}", timeout: 2s }
  gone: { url: "http://127.0.0.1:${dead}", timeout: 2s }
identity_headers:
  x-user-id: sub
routes:
  - { name: orders-read, path: /api/**, upstream: orders, auth: { issuers: [idp] }, token_sources: [{ header: Authorization, prefix: "Bearer " }, { query: access_token }] }
  - { name: rollout, path: /report/**, upstream: orders, mode: report, auth: { issuers: [idp], claims: { roles: { contains: admin } } } }
  - { name: broken, path: /gone/**, upstream: gone, auth: none }
  - { name: live, path: /ws/**, upstream: orders, auth: { issuers: [idp] }, websocket: true }
`

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const CLIENT_SPAN = '00f067aa0ba902b7'
const SUB = 'user-7f3a9c'

function spansOf(traceId: string): ReceivedSpan[] {
  return receiver.spans.filter((s) => s.traceId === traceId)
}

async function spansFor(traceId: string, count: number): Promise<ReceivedSpan[]> {
  await eventually(
    () => `${count} spans of trace ${traceId}; received ${JSON.stringify(receiver.spans.map((s) => [s.traceId, s.name]))}`,
    15_000,
    () => spansOf(traceId).length >= count,
  )
  return spansOf(traceId)
}

function one(spans: ReceivedSpan[], kind: number): ReceivedSpan {
  const found = spans.filter((s) => s.kind === kind)
  if (found.length !== 1) throw new Error(`expected one span of kind ${kind}, got ${JSON.stringify(found)}`)
  return found[0]!
}

function accessLines(logs: LogCapture): Array<Record<string, unknown>> {
  return logs.lines.filter((l) => l.msg === 'request')
}

t.test('an allowed request: a SERVER span named after its route, child of the client context; a CLIENT span whose context the upstream received', async (t) => {
  const gw = await gateway(t, POLICY)
  const token = idp.sign({ sub: SUB, aud: 'orders-api' })
  const res = await get(`${gw.url}/api/orders/42?page=2&secretq=hidden-value`, {
    authorization: `Bearer ${token}`,
    cookie: 'session=cookie-secret-value',
    'user-agent': 'tracing-test/1.0',
    traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01`,
    tracestate: 'vendor=opaque-1,other=2',
  })
  t.equal(res.status, 200)
  const spans = await spansFor(TRACE_ID, 2)
  t.equal(spans.length, 2, 'one server and one client span')
  const server = one(spans, SpanKind.SERVER)
  const client = one(spans, SpanKind.CLIENT)

  t.equal(server.name, 'GET orders-read', 'named `{method} {route name}`')
  t.equal(server.parentSpanId, CLIENT_SPAN, "the server span continues the client's traceparent")
  t.match(server.attributes, {
    'http.request.method': 'GET',
    'url.path': '/api/orders/42',
    'url.scheme': 'http',
    'http.route': 'orders-read',
    'http.response.status_code': 200,
    'server.address': '127.0.0.1',
    'client.address': '127.0.0.1',
    'network.peer.address': '127.0.0.1',
    'user_agent.original': 'tracing-test/1.0',
    'jwtgate.decision': 'allow',
    'jwtgate.issuer': 'idp',
    'jwtgate.upstream': 'orders',
  })
  t.notOk('jwtgate.reason' in server.attributes, 'no reason on an allowed request')
  t.equal(server.status.code, StatusCode.UNSET)

  t.equal(client.name, 'GET')
  t.equal(client.parentSpanId, server.spanId, 'the client span is a child of the server span')
  t.match(client.attributes, {
    'http.request.method': 'GET',
    'http.response.status_code': 200,
    'server.address': '127.0.0.1',
    'server.port': up.port,
    'url.full': `${up.url}/api/orders/42`,
    'jwtgate.upstream': 'orders',
  })

  const seen = up.received.at(-1)!
  t.equal(seen.headers.traceparent, `00-${TRACE_ID}-${client.spanId}-01`, "the upstream's traceparent is the client span's context")
  t.equal(seen.headers.tracestate, 'vendor=opaque-1,other=2', 'tracestate passed on')

  t.match(server.resource, {
    'service.name': 'orders-gateway',
    'deployment.environment.name': 'test',
    'telemetry.sdk.name': 'opentelemetry',
    'process.pid': process.pid,
  })
  t.equal(server.scope, 'jwtgate')
  t.equal(receiver.requests.at(-1)!.headers['x-collector-key'], 'collector-secret-1', 'OTEL_EXPORTER_OTLP_HEADERS are sent')

  // Nothing secret or identifying in any attribute: the token (or its signature), the cookie,
  // the query string, the identity header's value.
  const text = JSON.stringify(spans)
  for (const secret of [token, token.split('.')[2]!, 'cookie-secret-value', 'secretq', 'hidden-value', 'page=2', SUB])
    t.notOk(text.includes(secret), `no ${secret.slice(0, 20)} in the spans`)

  // The access line names the trace and the gateway's span in it.
  t.match(accessLines(gw.logs).at(-1), { trace_id: TRACE_ID, span_id: server.spanId, route: 'orders-read', upstream_status: 200 })
})

t.test('a token in the query: never in url.full or url.path', async (t) => {
  const gw = await gateway(t, POLICY)
  const token = idp.sign({ sub: SUB, aud: 'orders-api' })
  const traceId = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1'
  t.equal((await get(`${gw.url}/api/q?access_token=${token}`, { traceparent: `00-${traceId}-${CLIENT_SPAN}-01` })).status, 200)
  const spans = await spansFor(traceId, 2)
  const text = JSON.stringify(spans)
  t.notOk(text.includes(token.split('.')[2]!), 'no token signature')
  t.notOk(text.includes('access_token'), 'no query parameter name')
  t.equal(one(spans, SpanKind.CLIENT).attributes['url.full'], `${up.url}/api/q`)
})

t.test('denied requests get a SERVER span with the status and the reason code, and no CLIENT span', async (t) => {
  const gw = await gateway(t, POLICY)
  const cases: Array<{ traceId: string; path: string; headers: Record<string, string>; status: number; reason: string; route?: string; name: string }> = [
    {
      traceId: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb1',
      path: '/api/x',
      headers: {},
      status: 401,
      reason: 'missing_token',
      route: 'orders-read',
      name: 'GET orders-read',
    },
    {
      traceId: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2',
      path: '/api/x',
      headers: { authorization: `Bearer ${idp.sign({ sub: SUB, aud: 'someone-else' })}` },
      status: 401,
      reason: 'wrong_audience',
      route: 'orders-read',
      name: 'GET orders-read',
    },
    { traceId: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb3', path: '/nowhere', headers: {}, status: 404, reason: 'no_route', route: undefined, name: 'GET' },
  ]
  for (const c of cases) {
    t.equal((await get(`${gw.url}${c.path}`, { ...c.headers, traceparent: `00-${c.traceId}-${CLIENT_SPAN}-01` })).status, c.status)
  }
  for (const c of cases) {
    const spans = await spansFor(c.traceId, 1)
    t.equal(spans.length, 1, `${c.reason}: only the server span`)
    const [server] = spans
    t.equal(server!.kind, SpanKind.SERVER)
    t.equal(server!.name, c.name)
    t.equal(server!.parentSpanId, CLIENT_SPAN)
    t.match(server!.attributes, { 'http.response.status_code': c.status, 'jwtgate.decision': 'deny', 'jwtgate.reason': c.reason })
    t.equal(server!.attributes['http.route'], c.route)
    t.equal(server!.status.code, StatusCode.UNSET, "a 4xx is the client's: not a span error")
  }
})

t.test('a report route: decision report with the reason enforcing would give; forwarded, so a client span too', async (t) => {
  const gw = await gateway(t, POLICY)
  const traceId = 'cccccccccccccccccccccccccccccc01'
  const res = await get(`${gw.url}/report/x`, {
    authorization: `Bearer ${idp.sign({ sub: SUB, aud: 'orders-api' })}`,
    traceparent: `00-${traceId}-${CLIENT_SPAN}-01`,
  })
  t.equal(res.status, 200)
  const spans = await spansFor(traceId, 2)
  t.match(one(spans, SpanKind.SERVER).attributes, { 'jwtgate.decision': 'report', 'jwtgate.reason': 'insufficient_claims', 'http.route': 'rollout' })
})

t.test('an upstream that cannot be reached: both spans are errors with the reason as error.type', async (t) => {
  const gw = await gateway(t, POLICY)
  const traceId = 'dddddddddddddddddddddddddddddd01'
  t.equal((await get(`${gw.url}/gone/x`, { traceparent: `00-${traceId}-${CLIENT_SPAN}-01` })).status, 502)
  const spans = await spansFor(traceId, 2)
  const server = one(spans, SpanKind.SERVER)
  const client = one(spans, SpanKind.CLIENT)
  t.match(server.attributes, { 'http.response.status_code': 502, 'jwtgate.reason': 'upstream_unreachable', 'error.type': 'upstream_unreachable' })
  t.equal(server.status.code, StatusCode.ERROR)
  t.match(client.attributes, { 'error.type': 'upstream_unreachable', 'jwtgate.upstream': 'gone' })
  t.notOk('http.response.status_code' in client.attributes, 'no answer came')
  t.equal(client.status.code, StatusCode.ERROR)
  t.equal(client.parentSpanId, server.spanId)
})

t.test('no traceparent: a new trace, the server span its root; an invalid one is not continued nor passed on', async (t) => {
  const gw = await gateway(t, POLICY)
  const token = idp.sign({ sub: SUB, aud: 'orders-api' })
  const before = receiver.spans.length
  t.equal((await get(`${gw.url}/api/new`, { authorization: `Bearer ${token}` })).status, 200)
  const fresh = up.received.at(-1)!.headers.traceparent as string
  t.match(fresh, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'the upstream gets the new trace')
  const [, traceId, spanId] = fresh.split('-')
  const spans = await spansFor(traceId!, 2)
  t.equal(one(spans, SpanKind.SERVER).parentSpanId, '', 'the server span is the root')
  t.equal(one(spans, SpanKind.CLIENT).spanId, spanId)

  for (const bad of [
    `ff-${TRACE_ID}-${CLIENT_SPAN}-01`,
    `00-${TRACE_ID.toUpperCase()}-${CLIENT_SPAN}-01`,
    `00-${'0'.repeat(32)}-${CLIENT_SPAN}-01`,
    `00-${TRACE_ID}-${CLIENT_SPAN}-01-extra`,
  ]) {
    t.equal((await get(`${gw.url}/api/bad`, { authorization: `Bearer ${token}`, traceparent: bad, tracestate: 'vendor=x' })).status, 200)
    const sent = up.received.at(-1)!.headers
    t.not(sent.traceparent, bad)
    t.notOk(String(sent.traceparent).includes(TRACE_ID), `${bad}: its trace is not continued`)
    t.notOk(sent.tracestate, 'nor its tracestate passed on')
  }
  t.ok(receiver.spans.length > before)
})

t.test('a WebSocket upgrade: a SERVER span for the upgrade (101) and a CLIENT span whose context the upstream got', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  const upgrades: Array<Record<string, unknown>> = []
  wss.on('connection', (_socket, req) => upgrades.push(req.headers))
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  t.teardown(() => {
    for (const c of wss.clients) c.terminate()
    return new Promise<void>((resolve) => wss.close(() => resolve()))
  })
  const wsPort = (wss.address() as AddressInfo).port
  const gw = await gateway(t, POLICY.replace(`orders: { url: "${up.url}", timeout: 2s }`, `orders: { url: "http://127.0.0.1:${wsPort}", timeout: 2s }`))
  const traceId = 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeee01'
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws/chat`, {
    headers: { authorization: `Bearer ${idp.sign({ sub: SUB, aud: 'orders-api' })}`, traceparent: `00-${traceId}-${CLIENT_SPAN}-01` },
  })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  ws.close()
  const spans = await spansFor(traceId, 2)
  const server = one(spans, SpanKind.SERVER)
  const client = one(spans, SpanKind.CLIENT)
  t.equal(server.name, 'GET live')
  t.match(server.attributes, { 'http.response.status_code': 101, 'jwtgate.websocket': true, 'jwtgate.decision': 'allow', 'http.route': 'live' })
  t.equal(client.parentSpanId, server.spanId)
  t.equal(client.attributes['http.response.status_code'], 101)
  t.equal(upgrades.at(-1)!.traceparent, `00-${traceId}-${client.spanId}-01`)
})

t.test('OTEL_TRACES_SAMPLER=always_off: nothing exported, the upstream still gets a context of its own', async (t) => {
  process.env.OTEL_TRACES_SAMPLER = 'always_off'
  t.teardown(() => {
    delete process.env.OTEL_TRACES_SAMPLER
  })
  const gw = await gateway(t, POLICY)
  const traceId = 'ffffffffffffffffffffffffffff0001'
  t.equal(
    (await get(`${gw.url}/api/x`, { authorization: `Bearer ${idp.sign({ sub: SUB, aud: 'orders-api' })}`, traceparent: `00-${traceId}-${CLIENT_SPAN}-01` }))
      .status,
    200,
  )
  const sent = String(up.received.at(-1)!.headers.traceparent)
  t.match(sent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`), 'same trace, a new parent, not sampled')
  t.not(sent.split('-')[2], CLIENT_SPAN)
  await gw.close()
  t.same(spansOf(traceId), [], 'no span exported, shutdown flush included')
})

t.test('shutdown flushes what the batch still holds', async (t) => {
  process.env.OTEL_BSP_SCHEDULE_DELAY = '600000'
  t.teardown(() => {
    process.env.OTEL_BSP_SCHEDULE_DELAY = OTEL_ENV.OTEL_BSP_SCHEDULE_DELAY
  })
  const gw = await gateway(t, POLICY)
  const traceId = 'ffffffffffffffffffffffffffff0002'
  t.equal((await get(`${gw.url}/api/x`, { traceparent: `00-${traceId}-${CLIENT_SPAN}-01` })).status, 401)
  await new Promise((r) => setTimeout(r, 200))
  t.same(spansOf(traceId), [], 'not exported yet: the batch waits')
  await gw.shutdown()
  t.equal(spansOf(traceId).length, 1, 'exported by the shutdown')
})

t.test('the OpenTelemetry variables are what turns export on: unset, the gateway exports nothing', async (t) => {
  for (const name of Object.keys(OTEL_ENV)) delete process.env[name]
  t.teardown(() => Object.assign(process.env, OTEL_ENV))
  const gw = await gateway(t, POLICY)
  const traceId = 'ffffffffffffffffffffffffffff0003'
  t.equal((await get(`${gw.url}/api/x`, { traceparent: `00-${traceId}-${CLIENT_SPAN}-01` })).status, 401)
  await gw.close()
  t.same(spansOf(traceId), [])
  t.notOk(accessLines(gw.logs).at(-1)!.span_id, 'no span id without spans')
  t.equal(accessLines(gw.logs).at(-1)!.trace_id, traceId, "the client's trace id is logged still")
})

t.test('a collector that never answers cannot hold the shutdown past shutdown.timeout', async (t) => {
  // Accepts the export and never answers it.
  const hung = createServer(() => {})
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    hung.closeAllConnections()
    hung.close()
  })
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(hung.address() as AddressInfo).port}`
  process.env.OTEL_BSP_SCHEDULE_DELAY = '600000'
  t.teardown(() => Object.assign(process.env, OTEL_ENV))
  const gw = await gateway(t, POLICY.replace('routes:', 'shutdown: { drain_delay: 0s, timeout: 1s }\nroutes:'))
  t.equal((await get(`${gw.url}/api/x`)).status, 401)
  await gw.shutdown()
  t.ok(
    gw.logs.lines.some((l) => l.msg === 'tracing: spans not exported before the shutdown timeout'),
    'the shutdown gave up on the export and said so',
  )
})

t.test(
  'an HTTP/2 upstream (node:http2 forwarder): the CLIENT span ends, and its context is what the upstream got; the access line has the body size',
  async (t) => {
    const seen: Array<string | undefined> = []
    const h2 = http2.createServer((req, res) => {
      seen.push(req.headers.traceparent as string | undefined)
      res.end('hello over h2')
    })
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>((resolve) => h2.close(() => resolve())))
    const h2Url = `http://127.0.0.1:${(h2.address() as AddressInfo).port}`
    const gw = await gateway(
      t,
      `version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nupstreams:\n  h2: { url: "${h2Url}", protocol: h2c, timeout: 2s }\nroutes:\n  - { name: over-h2, path: /h2/**, upstream: h2, auth: none }\n`,
    )
    const traceId = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'
    const res = await get(`${gw.url}/h2/x`, { traceparent: `00-${traceId}-${CLIENT_SPAN}-01` })
    t.equal(res.status, 200)
    const spans = await spansFor(traceId, 2)
    const server = one(spans, SpanKind.SERVER)
    const client = one(spans, SpanKind.CLIENT)
    t.equal(client.parentSpanId, server.spanId, 'the client span is the server span’s child')
    t.equal(seen[0], `00-${traceId}-${client.spanId}-01`, 'the upstream continued the client span')
    t.equal(client.attributes['http.response.status_code'], 200)
    await eventually('the access line', 2000, async () => accessLines(gw.logs).length > 0)
    t.equal(accessLines(gw.logs).at(-1)!.response_bytes, 'hello over h2'.length, 'the answer body counted as it streamed')
  },
)
