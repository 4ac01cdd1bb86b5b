// decide(): the policy decision shared by the proxy, `explain` and `test`, on a policy compiled
// from a YAML file, with real HS256 tokens verified in-process.
import t from 'tap'
import { createHmac } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Credentials } from '../src/auth/authenticate.js'
import { decide, type Decision } from '../src/decide.js'
import { createLogger } from '../src/log.js'
import { loadPolicy } from '../src/policy/compile.js'
import type { Preflight } from '../src/proxy/cors.js'

const SECRET = 'a-shared-secret-of-at-least-32-bytes!!'
const policy = loadPolicy(fileURLToPath(new URL('fixtures/decide.yaml', import.meta.url)), createLogger('silent'), { DECIDE_SECRET: SECRET })
t.teardown(() => {
  for (const issuer of policy.issuers.values()) issuer.stop()
})

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
function sign(claims: Record<string, unknown>): string {
  const now = Math.floor(Date.now() / 1000)
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ iss: 'internal-auth', aud: 'orders-api', iat: now, exp: now + 300, ...claims })}`
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`
}

/** A request as decide() reads it: raw headers and the target. */
function request(target: string, headers: Record<string, string> = {}): Credentials {
  return { rawHeaders: Object.entries(headers).flat(), url: target }
}

async function run(method: string, target: string, headers: Record<string, string> = {}, preflight?: Preflight): Promise<Decision> {
  const out: Decision = {}
  await decide(policy, method, '127.0.0.1', target, request(target, headers), out, preflight)
  return out
}

const reader = sign({ sub: 'alice', roles: ['reader'] })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('the first route that matches method and path decides', async (t) => {
  const out = await run('GET', '/orders/7', bearer(reader))
  t.equal(out.route?.name, 'GET,POST /orders/**')
  t.equal(out.denial, undefined)
  t.equal(out.path, '/orders/7')
  t.equal(out.identity?.claims.sub, 'alice')
  t.same(out.identityHeaders, { 'x-user-id': 'alice' }, 'identity headers from the verified claims')
})

t.test('auth: none allows without a token and without identity', async (t) => {
  const out = await run('GET', '/public/a', bearer(reader))
  t.equal(out.route?.name, '/public/**')
  t.equal(out.denial, undefined)
  t.equal(out.identity, undefined)
  t.equal(out.identityHeaders, undefined)
})

t.test('no route: 404 no_route, also when only the method differs', async (t) => {
  t.match((await run('GET', '/elsewhere')).denial, { status: 404, reason: 'no_route' })
  const out = await run('DELETE', '/orders/7', bearer(reader))
  t.match(out.denial, { status: 404, reason: 'no_route' })
  t.equal(out.route, undefined)
})

t.test('the path is normalized before matching; a bad one is 400 bad_path', async (t) => {
  const escaped = await run('GET', '/public/../orders/7')
  t.equal(escaped.path, '/orders/7', 'dot segments resolved')
  t.equal(escaped.route?.name, 'GET,POST /orders/**', 'so /public/.. cannot reach /orders unchecked')
  t.match(escaped.denial, { status: 401, reason: 'missing_token' })
  t.match((await run('GET', '/public/a%2fb')).denial, { status: 400, reason: 'bad_path' })
  t.match((await run('GET', '/public/a;x=1')).denial, { status: 400, reason: 'bad_path' }, 'path parameters refused by default')
})

t.test('a path an upstream could decode further is 400 bad_path, unless the route opts out', async (t) => {
  // Double encoding (an upstream decoding twice reads /public/../orders) and a fullwidth solidus
  // and one-dot leaders (an upstream applying NFKC reads / and ..).
  for (const target of ['/public/%252e%252e/orders/7', '/public/%25%32%65%25%32%65/orders', '/public/%E2%80%A5%EF%BC%8Forders', '/public/a%255Cb']) {
    const out = await run('GET', target)
    t.equal(out.route?.name, '/public/**', `${target}: matched, then refused`)
    t.match(out.denial, { status: 400, reason: 'bad_path' }, target)
  }
  const allowed = await run('GET', '/files/%252e%252e/%EF%BC%8F')
  t.equal(allowed.route?.name, '/files/**')
  t.equal(allowed.denial, undefined, 'allow_ambiguous_paths: true forwards it')
  t.equal(allowed.path, '/files/%252e%252e/%EF%BC%8F', 'as normalized, never decoded twice')
  t.equal((await run('GET', '/public/100%25')).denial, undefined, 'a %25 a second decoding leaves alone is fine')
})

t.test('a token is required, verified, and must meet the requirement', async (t) => {
  t.match((await run('GET', '/orders/1')).denial, { status: 401, reason: 'missing_token' })
  const forged = `${reader.slice(0, reader.lastIndexOf('.'))}.${createHmac('sha256', 'another-secret-another-secret-xx').update('x').digest('base64url')}`
  t.match((await run('GET', '/orders/1', bearer(forged))).denial, { status: 401, reason: 'bad_signature' })
  t.match((await run('GET', '/orders/1', bearer(sign({ sub: 'bob', exp: 1 })))).denial, { status: 401, reason: 'expired' })
  t.match((await run('GET', '/orders/1', bearer(sign({ sub: 'bob', aud: 'other' })))).denial, { status: 401, reason: 'wrong_audience' })
  const refused = await run('GET', '/orders/1', bearer(sign({ sub: 'bob', roles: ['writer'] })))
  t.match(refused.denial, { status: 403, reason: 'insufficient_claims' })
  t.equal(refused.identityHeaders, undefined, 'a refused token sends no identity')
})

t.test('optional: no token is anonymous, a bad token is still refused', async (t) => {
  const anonymous = await run('GET', '/maybe/x')
  t.equal(anonymous.denial, undefined)
  t.equal(anonymous.identity, undefined)
  t.match((await run('GET', '/maybe/x', bearer('not.a.token'))).denial, { status: 401, reason: 'malformed' })
  t.equal((await run('GET', '/maybe/x', bearer(reader))).identity?.claims.sub, 'alice')
})

t.test('mode: report records the denial and lets the request go, identity only from a verified token', async (t) => {
  const refused = await run('GET', '/trial/x', bearer(reader))
  t.equal(refused.denial, undefined, 'not enforced')
  t.match(refused.reported, { status: 403, reason: 'insufficient_claims' })
  t.same(refused.identityHeaders, { 'x-user-id': 'alice' }, 'the verified identity is still forwarded')
  const missing = await run('GET', '/trial/x')
  t.equal(missing.denial, undefined)
  t.match(missing.reported, { status: 401, reason: 'missing_token' })
  t.equal(missing.identityHeaders, undefined, 'no identity without a verified token')
  const forged = await run('GET', '/trial/x', bearer(`${reader}x`))
  t.equal(forged.identityHeaders, undefined, 'no identity from a token that failed verification')
  const admin = await run('GET', '/trial/x', bearer(sign({ sub: 'root', roles: ['admin'] })))
  t.equal(admin.reported, undefined, 'nothing to report')
})

t.test('a CORS preflight is decided without a token, by the route the request would use', async (t) => {
  const allowed = await run('OPTIONS', '/browser/x', {}, { origin: 'https://app.example.com', method: 'PUT', headers: 'authorization' })
  t.equal(allowed.preflight, true)
  t.equal(allowed.route?.name, 'DELETE,GET,PUT /browser/**', 'the route of the PUT, though it does not list OPTIONS')
  t.equal(allowed.denial, undefined)
  const otherOrigin = await run('OPTIONS', '/browser/x', {}, { origin: 'https://evil.example', method: 'PUT', headers: '' })
  t.match(otherOrigin.denial, { status: 403, reason: 'cors_rejected' })
  const otherMethod = await run('OPTIONS', '/browser/x', {}, { origin: 'https://app.example.com', method: 'DELETE', headers: '' })
  t.match(otherMethod.denial, { status: 403, reason: 'cors_rejected' }, 'a method of the route that cors.methods does not list')
  const noCors = await run('OPTIONS', '/orders/1', {}, { origin: 'https://app.example.com', method: 'GET', headers: '' })
  t.equal(noCors.preflight, undefined, 'a route without cors: an OPTIONS request like any other')
  t.match(noCors.denial, { status: 404, reason: 'no_route' }, '/orders lists no OPTIONS')
})

t.test('claims given as verified (explain, test) skip the signature, not the rules', async (t) => {
  const out: Decision = {}
  await decide(
    policy,
    'GET',
    '127.0.0.1',
    '/orders/1',
    { claims: { iss: 'internal-auth', aud: 'orders-api', sub: 'carol', roles: ['reader'], exp: Math.floor(Date.now() / 1000) + 60 } },
    out,
  )
  t.equal(out.denial, undefined)
  t.same(out.identityHeaders, { 'x-user-id': 'carol' })
  const refused: Decision = {}
  await decide(
    policy,
    'GET',
    '127.0.0.1',
    '/orders/1',
    { claims: { iss: 'internal-auth', aud: 'orders-api', sub: 'carol', exp: Math.floor(Date.now() / 1000) + 60 } },
    refused,
  )
  t.match(refused.denial, { reason: 'insufficient_claims' })
})

t.test('a Host that is present but not valid is 400 bad_host; an absent one is fine', async (t) => {
  for (const host of ['127.0.0.1, evil', '127.0.0.1:abc', ':123456', '127.0.0.1:1:2', '']) {
    const out: Decision = {}
    await decide(policy, 'GET', host, '/public/a', request('/public/a'), out)
    t.match(out.denial, { status: 400, reason: 'bad_host' }, JSON.stringify(host))
    t.equal(out.route, undefined)
  }
  const out: Decision = {}
  await decide(policy, 'GET', undefined, '/public/a', request('/public/a'), out)
  t.equal(out.denial, undefined, 'HTTP/1.0 sends no Host')
})
