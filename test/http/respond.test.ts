// The one writer of error answers: the headers each status needs and the JSON body, the same
// for fastify's replies and for detached sockets.
import t from 'tap'
import { deny, fail } from '../../src/http/denial.js'
import { errorBody, errorHeaders } from '../../src/http/respond.js'

const base = { 'cache-control': 'no-store', 'content-type': 'application/json' }

t.test('every answer: no-store, JSON, { error, message, request_id }', async (t) => {
  const denial = deny('no_route', 'no route of the policy matches this request')
  t.same(errorHeaders(denial), base)
  t.same(JSON.parse(errorBody(denial, 'req-1')), { error: 'no_route', message: 'no route of the policy matches this request', request_id: 'req-1' })
})

t.test('401 and 403 carry the RFC 6750 challenge; other refusals none', async (t) => {
  t.equal(errorHeaders(deny('missing_token', 'no token'))['www-authenticate'], 'Bearer realm="jwtgate"')
  t.equal(
    errorHeaders(deny('expired', 'the token has expired'))['www-authenticate'],
    'Bearer realm="jwtgate", error="invalid_token", error_description="the token has expired"',
  )
  t.equal(
    errorHeaders({ ...deny('insufficient_claims', 'needs "a"'), scope: 'orders:read' })['www-authenticate'],
    'Bearer realm="jwtgate", error="insufficient_scope", error_description="needs a", scope="orders:read"',
    'quotes cannot break out of the parameter',
  )
  t.notOk('www-authenticate' in errorHeaders(deny('cors_rejected', 'x')))
  t.notOk('www-authenticate' in errorHeaders(deny('bad_path', 'x')))
})

t.test('503 says when to come back; 308 where to go; 413 closes the connection', async (t) => {
  t.match(errorHeaders(deny('keys_unavailable', 'the keys could not be fetched')), { 'retry-after': '5', 'www-authenticate': /error_description/ })
  t.equal(errorHeaders({ ...deny('keys_unavailable', 'a fetch is due'), retryAfterS: 2 })['retry-after'], '2', 'a denial that knows when says so')
  t.equal(errorHeaders({ ...deny('https_required', 'https only'), status: 308, location: 'https://gw.example/x' }).location, 'https://gw.example/x')
  t.equal(errorHeaders(deny('body_too_large', 'too large')).connection, 'close', 'the rest of the body is not read')
})

t.test('failures: the status and message from the table, no challenge', async (t) => {
  t.match(fail('upstream_unreachable'), { status: 502, description: 'the upstream could not be reached' })
  t.match(fail('upstream_timeout'), { status: 504, description: 'the upstream did not answer in time' })
  t.match(fail('bad_request'), { status: 400 })
  t.match(fail('internal_error'), { status: 500 })
  t.equal(fail('bad_request', 'an upgrade request with a body is not supported').description, 'an upgrade request with a body is not supported')
  t.same(errorHeaders(fail('upstream_timeout')), base)
  t.same(JSON.parse(errorBody(fail('upstream_timeout'), 'r')), { error: 'upstream_timeout', message: 'the upstream did not answer in time', request_id: 'r' })
})
