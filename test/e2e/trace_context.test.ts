// W3C Trace Context with tracing off (no OTEL_* variables): the client's valid context reaches
// the upstream as it was, an invalid one does not, and none is made up. The headers are the
// gateway's own: a client cannot smuggle a malformed one through, nor name them as identity headers.
import t from 'tap'
import { API_ROUTE, bearer, gateway, get, issuer, policy, policyProblems, upstream } from '../support/harness.js'

for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name]

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const PARENT = 'b7ad6b7169203331'

t.test('a valid traceparent and tracestate reach the upstream unchanged; the access line names the trace', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: API_ROUTE }))
  const token = bearer(idp.sign({ sub: 'alice', aud: 'orders-api' }))
  const traceparent = `00-${TRACE}-${PARENT}-01`
  t.equal((await get(`${gw.url}/api/x`, { ...token, traceparent, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' })).status, 200)
  t.equal(up.received.at(-1)!.headers.traceparent, traceparent)
  t.equal(up.received.at(-1)!.headers.tracestate, 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE')
  const line = gw.logs.lines.filter((l) => l.msg === 'request').at(-1)!
  t.equal(line.trace_id, TRACE)
  t.notOk('span_id' in line, 'no span of the gateway without tracing')
})

t.test('an invalid traceparent is not passed on, nor its tracestate; a bad tracestate alone is dropped', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: API_ROUTE }))
  const token = bearer(idp.sign({ sub: 'alice', aud: 'orders-api' }))
  for (const bad of [`00-${TRACE}-${PARENT}`, `ff-${TRACE}-${PARENT}-01`, `00-${TRACE}-${PARENT}-01;injected=1`, `00-${TRACE}-${PARENT}-01 x`]) {
    t.equal((await get(`${gw.url}/api/x`, { ...token, traceparent: bad, tracestate: 'vendor=1' })).status, 200)
    t.notOk('traceparent' in up.received.at(-1)!.headers, `${bad}: no traceparent upstream`)
    t.notOk('tracestate' in up.received.at(-1)!.headers, 'and no tracestate')
    t.notOk('trace_id' in gw.logs.lines.filter((l) => l.msg === 'request').at(-1)!, 'no trace in the access line')
  }
  t.equal((await get(`${gw.url}/api/x`, { ...token, tracestate: 'vendor=1' })).status, 200)
  t.notOk('tracestate' in up.received.at(-1)!.headers, 'a tracestate without traceparent is not passed on')
  t.equal((await get(`${gw.url}/api/x`, { ...token, traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=1,BAD KEY=2' })).status, 200)
  t.equal(up.received.at(-1)!.headers.traceparent, `00-${TRACE}-${PARENT}-01`)
  t.notOk('tracestate' in up.received.at(-1)!.headers, 'a malformed tracestate is dropped, the traceparent kept')
})

t.test('no traceparent, no tracing: the gateway starts no trace', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: API_ROUTE }))
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign({ sub: 'alice', aud: 'orders-api' })))).status, 200)
  t.notOk('traceparent' in up.received.at(-1)!.headers)
  t.notOk('trace_id' in gw.logs.lines.filter((l) => l.msg === 'request').at(-1)!)
})

t.test('traceparent and tracestate cannot carry a claim', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const problems = policyProblems(
    policy({ issuer: idp, upstream: up, routes: API_ROUTE }).replace('identity_headers:\n', 'identity_headers:\n  traceparent: sub\n  TraceState: sub\n'),
  )
  t.match(problems, [/traceparent cannot carry a claim/, /TraceState cannot carry a claim/])
})
