// The JWKS lifecycle against a real key-set server: start-up, rotation, floods, outages.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { generateDevKey } from '../../src/devkit/dev_issuer.js'
import { API_ROUTE, bearer, eventually, gateway, get, issuer, policy, sleep, upstream } from '../support/harness.js'

const ROUTES = API_ROUTE
const claims = { sub: 'alice', aud: 'orders-api' }

t.test('the key set is fetched once at start-up and not per request', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  t.equal(idp.fetches, 1)
  for (let i = 0; i < 20; i++) t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign({ ...claims, n: i })))).status, 200)
  t.equal(idp.fetches, 1)
})

t.test('a flood of unknown kids costs at most one refetch per cool-down', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  // Long enough that a loaded machine serves the whole flood within one cool-down; the bound
  // below still allows for one that does not.
  const cooldownMs = 2000
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: `    jwks: { cooldown: ${cooldownMs}ms }` }))
  await sleep(cooldownMs + 50)
  const before = idp.fetches
  const started = performance.now()
  const attacker = generateDevKey({ alg: 'RS256' })
  const forged = () => idp.sign(claims, { key: { ...attacker, kid: randomUUID() } })
  const results = await Promise.all(Array.from({ length: 50 }, () => get(`${gw.url}/api/x`, bearer(forged()))))
  t.ok(results.every((r) => r.status === 401 && r.json.error === 'unknown_kid'))
  for (let i = 0; i < 20; i++) await get(`${gw.url}/api/x`, bearer(forged()))
  const allowed = 1 + Math.floor((performance.now() - started) / cooldownMs)
  const flood = idp.fetches - before
  t.ok(flood >= 1 && flood <= allowed, `70 unknown kids cost ${flood} fetches; at most one per cool-down (${allowed})`)
  await sleep(cooldownMs + 50)
  await get(`${gw.url}/api/x`, bearer(forged()))
  t.equal(idp.fetches - before, flood + 1, 'one more once it has passed')
})

t.test('a rotated key is picked up on first sight of its kid', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: '    jwks: { cooldown: 200ms }' }))
  await sleep(250)
  const next = generateDevKey({ alg: 'RS256', kid: 'rotated' })
  idp.keys.push(next)
  const token = idp.sign(claims, { key: next })
  const results = await Promise.all(Array.from({ length: 10 }, () => get(`${gw.url}/api/x`, bearer(token))))
  t.ok(
    results.every((r) => r.status === 200),
    'requests waiting on the refetch all succeed',
  )
  t.equal(idp.fetches, 2)
})

t.test('a key removed from the set stops verifying after a refresh', async (t) => {
  const idp = await issuer(t, [
    { alg: 'RS256', kid: 'old' },
    { alg: 'RS256', kid: 'new' },
  ])
  const up = await upstream(t)
  idp.respond.cacheControl = 'max-age=1'
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: '    jwks: { min_age: 500ms, cooldown: 10s }' }))
  const old = idp.sign(claims, { key: idp.keys[0] })
  t.equal((await get(`${gw.url}/api/x`, bearer(old))).status, 200)
  idp.keys.shift()
  await eventually('the background refresh dropped the key', 3000, async () => (await get(`${gw.url}/api/x`, bearer(old))).status === 401)
  t.ok(idp.fetches >= 2, 'refreshed in the background, driven by Cache-Control max-age')
})

t.test('the gateway starts with the IdP down, answers 503, and recovers by itself', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  idp.respond.status = 500
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: '    jwks: { cooldown: 1s }' }))
  const token = idp.sign(claims)
  const down = await get(`${gw.url}/api/x`, bearer(token))
  t.equal(down.status, 503)
  t.equal(down.json.error, 'keys_unavailable')
  t.match(down.headers.get('www-authenticate'), /error_description="the issuer's signing keys are unavailable/)
  t.notMatch(down.headers.get('www-authenticate'), /invalid_token/, 'not blamed on the token')
  t.equal(up.received.length, 0)
  idp.respond.status = 200
  await eventually('recovered without a restart', 5000, async () => (await get(`${gw.url}/api/x`, bearer(token))).status === 200)
})

t.test('the last good keys are kept when the IdP fails, answers garbage or hangs', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: '    jwks: { cooldown: 100ms, timeout: 300ms }' }))
  const token = idp.sign(claims)
  const unknown = () => idp.sign(claims, { key: { ...idp.keys[0]!, kid: randomUUID() } })
  for (const failure of [
    { status: 500 },
    { status: 200, body: '<html>oops</html>' },
    { status: 200, body: '{"keys": []}' },
    { status: 200, body: '{"keys": [{"kty":"oct","k":"c2VjcmV0"}]}' },
    { status: 200, delayMs: 2000 },
  ]) {
    Object.assign(idp.respond, { body: undefined, delayMs: 0 }, failure)
    await sleep(150)
    const started = Date.now()
    const res = await get(`${gw.url}/api/x`, bearer(unknown()))
    t.equal(res.status, 401, `unknown kid during ${JSON.stringify(failure)}`)
    t.ok(Date.now() - started < 1500, 'a hung IdP delays a request by the fetch timeout at most')
    t.equal((await get(`${gw.url}/api/x`, bearer(token))).status, 200, `known keys still verify during ${JSON.stringify(failure)}`)
  }
})
