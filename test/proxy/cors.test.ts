// The CORS runtime functions, on rules compiled in-process: what a preflight is, which
// preflights a rule refuses, and the headers every response of a route with cors gets.
import t from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import { addCorsHeaders, allowsOrigin, compileCors, headerRecord, preflightOf, refusePreflight, type CorsRule } from '../../src/proxy/cors.js'
import type { CorsDocument } from '../../src/policy/schema.js'

function rule(spec: CorsDocument): CorsRule {
  const problems: string[] = []
  const compiled = compileCors(spec, ['cors'], (_at, message) => problems.push(message))
  if (!compiled) throw new Error(`not compiled: ${problems.join('; ')}`)
  return compiled
}

const app = rule({
  origins: ['https://app.example.com'],
  methods: ['GET', 'PUT'],
  headers: ['Authorization', 'X-Trace'],
  credentials: true,
  expose_headers: ['x-total'],
  max_age: '10m',
})
const any = rule({ origins: ['*'] })

t.test('a preflight is OPTIONS with Origin and Access-Control-Request-Method', async (t) => {
  const headers: IncomingHttpHeaders = {
    origin: 'https://app.example.com',
    'access-control-request-method': 'PUT',
    'access-control-request-headers': 'authorization',
  }
  t.same(preflightOf('OPTIONS', headers), { origin: 'https://app.example.com', method: 'PUT', headers: 'authorization' })
  t.same(preflightOf('OPTIONS', { ...headers, 'access-control-request-headers': undefined }), { origin: 'https://app.example.com', method: 'PUT', headers: '' })
  t.equal(preflightOf('GET', headers), undefined, 'not OPTIONS')
  t.equal(preflightOf('OPTIONS', { origin: 'https://app.example.com' }), undefined, 'no requested method: a plain OPTIONS request')
  t.equal(preflightOf('OPTIONS', { 'access-control-request-method': 'PUT' }), undefined, 'no Origin')
})

t.test('origins are compared exactly; "*" allows any', async (t) => {
  t.ok(allowsOrigin(app, 'https://app.example.com'))
  t.notOk(allowsOrigin(app, 'https://app.example.com.evil.test'), 'no prefix match')
  t.notOk(allowsOrigin(app, 'https://APP.example.com'), 'no case folding')
  t.notOk(allowsOrigin(app, 'http://app.example.com'), 'the scheme is part of the origin')
  t.notOk(allowsOrigin(app, 'null'))
  t.ok(allowsOrigin(any, 'https://anything.test'))
})

t.test('a preflight is refused for an origin, method or header the rule does not allow', async (t) => {
  const ok = { origin: 'https://app.example.com', method: 'PUT', headers: 'Authorization, x-trace' }
  t.equal(refusePreflight(app, ok), undefined, 'header names in any case')
  t.match(refusePreflight(app, { ...ok, origin: 'https://evil.test' }), { status: 403, reason: 'cors_rejected', description: /origin/ })
  t.match(refusePreflight(app, { ...ok, method: 'DELETE' }), { status: 403, reason: 'cors_rejected', description: /method DELETE/ })
  t.match(refusePreflight(app, { ...ok, headers: 'authorization, x-admin' }), { status: 403, reason: 'cors_rejected', description: /header x-admin/ })
  t.match(refusePreflight(app, { ...ok, method: 'x'.repeat(500) })?.description, /x{64}…/, 'a long value is clipped in the message')
})

t.test("an allowed origin gets its headers; the upstream's own Access-Control-* are replaced", async (t) => {
  const sink = headerRecord()
  sink.header('access-control-allow-origin', '*')
  sink.header('access-control-allow-methods', 'DELETE')
  addCorsHeaders(sink, app, 'https://app.example.com', false, false)
  t.same(sink.headers, {
    vary: 'Origin',
    'access-control-allow-origin': 'https://app.example.com',
    'access-control-allow-credentials': 'true',
    'access-control-expose-headers': 'x-total',
  })
})

t.test('another origin gets no Access-Control-* at all, and still Vary: Origin', async (t) => {
  const sink = headerRecord()
  sink.header('access-control-allow-origin', '*')
  addCorsHeaders(sink, app, 'https://evil.test', false, false)
  t.same(sink.headers, { vary: 'Origin' }, "the upstream's * is removed too")
  const none = headerRecord()
  addCorsHeaders(none, app, undefined, false, false)
  t.same(none.headers, { vary: 'Origin' }, 'no Origin: no CORS headers')
})

t.test('an allowed preflight gets the preflight headers; a refused one none', async (t) => {
  const sink = headerRecord()
  addCorsHeaders(sink, app, 'https://app.example.com', true, false)
  t.same(sink.headers, {
    vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    'access-control-allow-origin': 'https://app.example.com',
    'access-control-allow-methods': 'GET, PUT',
    'access-control-allow-headers': 'authorization, x-trace',
    'access-control-allow-credentials': 'true',
    'access-control-max-age': '600',
  })
  const refused = headerRecord()
  addCorsHeaders(refused, app, 'https://app.example.com', true, true)
  t.same(refused.headers, { vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers' })
})

t.test('"*" is answered with a literal *, never the origin, never with credentials', async (t) => {
  const sink = headerRecord()
  addCorsHeaders(sink, any, 'https://site.test', false, false)
  t.equal(sink.headers['access-control-allow-origin'], '*')
  t.equal(sink.headers['access-control-allow-credentials'], undefined)
})

t.test('Vary is added to, not replaced; Vary: * and an existing Origin are left alone', async (t) => {
  const add = (vary: string) => {
    const sink = headerRecord()
    sink.header('vary', vary)
    addCorsHeaders(sink, app, 'https://app.example.com', false, false)
    return sink.headers.vary
  }
  t.equal(add('Accept-Encoding'), 'Accept-Encoding, Origin')
  t.equal(add('*'), '*')
  t.equal(add('accept, origin'), 'accept, origin')
})
