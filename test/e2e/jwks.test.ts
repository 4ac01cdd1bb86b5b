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

t.test('a flood of unknown kids costs at most one fetch per cool-down', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const cooldownMs = 300
  const gw = await gateway(
    t,
    policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: `    jwks: { cooldown: ${cooldownMs}ms, min_age: 10m, max_age: 10m }` }),
  )
  const before = idp.fetches
  const started = performance.now()
  const attacker = generateDevKey({ alg: 'RS256' })
  const forged = () => idp.sign(claims, { key: { ...attacker, kid: randomUUID() } })
  const results = []
  for (let round = 0; round < 4; round++) results.push(...(await Promise.all(Array.from({ length: 50 }, () => get(`${gw.url}/api/x`, bearer(forged()))))))
  t.ok(
    results.every((r) => (r.status === 503 && r.json.error === 'keys_unavailable') || (r.status === 401 && r.json.error === 'unknown_kid')),
    'each is not known yet (503) or unknown (401)',
  )
  t.equal(up.received.length, 0)
  await sleep(cooldownMs + 100)
  const periods = Math.ceil((performance.now() - started) / cooldownMs)
  const flood = idp.fetches - before
  t.ok(flood >= 1 && flood <= periods, `200 unknown kids cost ${flood} fetches over ${periods} cool-downs: at most one per cool-down`)
  await sleep(cooldownMs + 100)
  t.equal(idp.fetches - before, flood, 'and none once they stop')
})

t.test('a key the IdP signs with as soon as it publishes it: 503 with Retry-After in the cool-down, then accepted', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: '    jwks: { cooldown: 1s, min_age: 10m }' }))
  // A cool-down starts with a fetch: one caused by a kid the IdP does not publish (now, or at
  // the end of the cool-down that began at start-up).
  const decoy = idp.sign(claims, { key: { ...idp.keys[0]!, kid: 'decoy' } })
  const first = await get(`${gw.url}/api/x`, bearer(decoy))
  if (first.status === 503) await eventually('the decoy fetch', 3000, () => idp.fetches === 2)
  // The IdP counts a fetch when it arrives and answers a moment later, from its keys as they are
  // then: a key published before the gateway has that answer would be in it. The decoy is 401
  // once the gateway has it.
  await eventually('the decoy fetch answered', 3000, async () => (await get(`${gw.url}/api/x`, bearer(decoy))).status === 401)
  t.equal(idp.fetches, 2)
  const next = generateDevKey({ alg: 'RS256', kid: 'published-now' })
  idp.keys.push(next)
  const token = idp.sign(claims, { key: next })
  const early = await get(`${gw.url}/api/x`, bearer(token))
  if (idp.fetches === 2) {
    // Within the cool-down (a machine slower than a second per request aside).
    t.same([early.status, early.json.error], [503, 'keys_unavailable'], 'not blamed on the token')
    t.equal(early.headers.get('retry-after'), '1', 'the rest of the cool-down, in whole seconds')
    t.notMatch(early.headers.get('www-authenticate'), /invalid_token/)
    t.equal(up.received.length, 0)
  } else t.comment('the request came after the cool-down: its kid was fetched at once')
  await eventually('the fetch due when the cool-down ends ran without another request', 3000, () => idp.fetches === 3)
  t.equal((await get(`${gw.url}/api/x`, bearer(token))).status, 200, 'the token is accepted')
  t.equal(idp.fetches, 3)

  const never = idp.sign(claims, { key: { ...next, kid: 'never-published' } })
  const seen = await get(`${gw.url}/api/x`, bearer(never))
  t.equal(seen.status, idp.fetches === 3 ? 503 : 401, 'a kid first seen within a cool-down is not known yet')
  await eventually('its fetch ran', 3000, () => idp.fetches === 4)
  await sleep(20)
  const unknown = await get(`${gw.url}/api/x`, bearer(never))
  t.same([unknown.status, unknown.json.error], [401, 'unknown_kid'], 'the key set fetched since lacks it: the token is at fault')
})

t.test('an unknown kid while the IdP is unreachable is a 503, and the key is accepted once it is back', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, issuerExtra: '    jwks: { cooldown: 200ms, min_age: 10m }' }))
  await sleep(250)
  idp.respond.status = 500
  const next = generateDevKey({ alg: 'RS256', kid: 'while-down' })
  idp.keys.push(next)
  const token = idp.sign(claims, { key: next })
  const down = await get(`${gw.url}/api/x`, bearer(token))
  t.same([down.status, down.json.error], [503, 'keys_unavailable'], "the fetch it caused failed: not the token's fault")
  t.match(down.headers.get('retry-after'), /^[1-9]\d*$/)
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign(claims)))).status, 200, 'known keys still verify')
  for (let i = 0; i < 3; i++) t.equal((await get(`${gw.url}/api/x`, bearer(token))).status, 503, 'still 503 while it is down')
  idp.respond.status = 200
  const fetches = idp.fetches
  await eventually('the retry after the IdP came back loaded the key', 3000, () => idp.fetches > fetches)
  await sleep(20)
  t.equal((await get(`${gw.url}/api/x`, bearer(token))).status, 200, 'accepted, with no 401 in between')
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
    t.same([res.status, res.json.error], [503, 'keys_unavailable'], `unknown kid during ${JSON.stringify(failure)}: the fetch failed, not the token`)
    t.ok(Date.now() - started < 1500, 'a hung IdP delays a request by the fetch timeout at most')
    t.equal((await get(`${gw.url}/api/x`, bearer(token))).status, 200, `known keys still verify during ${JSON.stringify(failure)}`)
  }
})
