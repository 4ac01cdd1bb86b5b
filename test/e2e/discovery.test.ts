// OIDC discovery against a real local IdP: the key set URL read from
// {issuer}/.well-known/openid-configuration, the document refused when it names another issuer
// or a plain-http key set off loopback, the IdP down, slow, redirecting or answering too much.
import t from 'tap'
import { startDevIssuer, type DevIssuer } from '../../src/devkit/dev_issuer.js'
import type { EchoUpstream } from '../../src/devkit/echo_upstream.js'
import { bearer, eventually, gateway, get, issuer, sleep, upstream } from '../support/harness.js'

function discoveryPolicy(idp: DevIssuer, up: EchoUpstream, jwks = '{ cooldown: 1s, timeout: 500ms }'): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp:
    issuer: ${idp.url}
    discovery: true
    audiences: [orders-api]
    algorithms: [RS256]
    jwks: ${jwks}
upstreams:
  orders: { url: "${up.url}", timeout: 2s }
routes:
  - path: /api/**
    upstream: orders
    auth: { issuers: [idp] }
`
}

const claims = { sub: 'alice', aud: 'orders-api' }

t.test('the key set URL comes from the discovery document', async (t) => {
  const idp = await issuer(t)
  const keys = await issuer(t)
  const up = await upstream(t)
  // The document sends the gateway to a key set elsewhere (as Google's, on another host).
  idp.discovery.document = { jwks_uri: keys.jwksUri }
  // A cool-down longer than a loaded machine takes to get to the second request.
  const gw = await gateway(t, discoveryPolicy(idp, up, '{ cooldown: 30s, timeout: 500ms }'))
  t.equal(idp.discoveryFetches, 1, 'discovery read once at start-up')
  t.same([keys.fetches, idp.fetches], [1, 0], 'and the key set it names')
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign(claims, { key: keys.keys[0] })))).status, 200)
  // Its kid is not in the named set: not known yet within the cool-down (503), never accepted.
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign(claims)))).status, 503, 'keys only from the set the document names')
  t.equal((await get(`${gw.adminUrl}/readyz`)).status, 200)
})

t.test('an issuer with a path (Keycloak): {issuer}/.well-known/openid-configuration', async (t) => {
  const idp = await startDevIssuer({ path: '/realms/demo' })
  t.teardown(() => idp.close())
  const up = await upstream(t)
  t.match(idp.discoveryUri, /^http:\/\/127\.0\.0\.1:\d+\/realms\/demo\/\.well-known\/openid-configuration$/)
  const gw = await gateway(t, discoveryPolicy(idp, up))
  t.equal(idp.discoveryFetches, 1)
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign(claims)))).status, 200)
})

t.test('a document naming another issuer is refused (OIDC Discovery §4.3)', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const attacker = await issuer(t)
  // The document vouches for the attacker's key set under another issuer's name.
  idp.discovery.document = { issuer: attacker.url, jwks_uri: attacker.jwksUri }
  const gw = await gateway(t, discoveryPolicy(idp, up))
  t.equal(attacker.fetches, 0, 'the key set it names is never fetched')
  const ready = await get(`${gw.adminUrl}/readyz`)
  t.equal(ready.status, 503)
  t.match(
    ready.json.reasons[0],
    /issuer idp: no signing keys yet \(discovery document names issuer "http:\/\/127\.0\.0\.1:\d+\/", not "http:\/\/127\.0\.0\.1:\d+\/"\)/,
  )
  const res = await get(`${gw.url}/api/x`, bearer(attacker.sign({ ...claims, iss: idp.url })))
  t.same([res.status, res.json.error], [503, 'keys_unavailable'])
  t.equal(up.received.length, 0)
  t.ok(
    gw.logs.lines.some((l) => l.msg === 'key set fetch failed' && /discovery document names issuer/.test(String(l.error)) && l.discovery === idp.discoveryUri),
  )
})

t.test('a key set URL that is not https is refused unless it is on loopback', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  // 0.0.0.0 reaches this host, but is not a loopback name: were the rule gone, the keys would load.
  idp.discovery.document = { jwks_uri: idp.jwksUri.replace('127.0.0.1', '0.0.0.0') }
  const gw = await gateway(t, discoveryPolicy(idp, up))
  t.equal(idp.fetches, 0)
  const ready = await get(`${gw.adminUrl}/readyz`)
  t.match(ready.json.reasons[0], /jwks_uri "http:\/\/0\.0\.0\.0:\d+\/\.well-known\/jwks\.json" is not https \(http is accepted only on loopback\)/)
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign(claims)))).status, 503)
})

t.test('the IdP down at start-up: 503 and not ready, then recovery without a restart', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  idp.discovery.status = 503
  const gw = await gateway(t, discoveryPolicy(idp, up))
  const token = idp.sign(claims)
  const down = await get(`${gw.url}/api/x`, bearer(token))
  t.same([down.status, down.json.error], [503, 'keys_unavailable'])
  t.equal(down.headers.get('retry-after'), '1', 'the back-off retry of the discovery fetch is due within a second')
  const ready = await get(`${gw.adminUrl}/readyz`)
  t.equal(ready.status, 503)
  t.match(ready.json.reasons[0], /cannot read the discovery document: HTTP 503/)
  t.equal(idp.fetches, 0, 'no key set URL, no key set fetch')
  idp.discovery.status = 200
  await eventually('recovered by the retry schedule', 5000, async () => (await get(`${gw.url}/api/x`, bearer(token))).status === 200)
  t.equal((await get(`${gw.adminUrl}/readyz`)).status, 200)
})

t.test('discovery is bounded: a hung IdP, a redirect, a huge or malformed document', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  // Where a redirect would lead: a document that would do, naming idp as its issuer.
  const elsewhere = await issuer(t)
  elsewhere.discovery.document = { issuer: idp.url, jwks_uri: idp.jwksUri }
  const failures: Array<[Partial<DevIssuer['discovery']>, RegExp]> = [
    [{ delayMs: 3000 }, /timed out/],
    [{ status: 302, body: '', headers: { location: elsewhere.discoveryUri } }, /HTTP 302/],
    [{ body: JSON.stringify({ issuer: idp.url, jwks_uri: idp.jwksUri, pad: 'x'.repeat(300 * 1024) }) }, /larger than/],
    [{ body: '<html>' }, /not JSON/],
    [{ body: '[]' }, /not a JSON object/],
    [{ document: { jwks_uri: 42 } }, /has no jwks_uri/],
    [{ document: { jwks_uri: 'ftp://127.0.0.1/keys' } }, /is not https/],
    [{ document: { jwks_uri: 'https://user:pw@keys.example.com/jwks' } }, /carries credentials/],
  ]
  for (const [failure, reason] of failures) {
    Object.assign(idp.discovery, { status: 200, body: undefined, delayMs: 0, document: undefined, headers: undefined }, failure)
    const started = Date.now()
    const gw = await gateway(t, discoveryPolicy(idp, up, '{ cooldown: 1h, timeout: 300ms }'))
    t.ok(Date.now() - started < 2500, 'the start is held by the timeout at most')
    const ready = await get(`${gw.adminUrl}/readyz`)
    t.match(ready.json.reasons?.[0], reason, JSON.stringify(failure).slice(0, 80))
    await gw.close()
  }
  t.equal(elsewhere.discoveryFetches, 0, 'the redirect was not followed')
})

t.test('discovery is read again on the key set schedule: a moved jwks_uri is followed', async (t) => {
  const idp = await issuer(t)
  const next = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, discoveryPolicy(idp, up, '{ cooldown: 200ms }'))
  t.equal((await get(`${gw.url}/api/x`, bearer(idp.sign(claims)))).status, 200)
  // The IdP moves its keys to another URL, with a new key; a token with its kid triggers a refetch.
  idp.discovery.document = { jwks_uri: next.jwksUri }
  await sleep(250)
  const moved = idp.sign(claims, { key: next.keys[0] })
  t.equal((await get(`${gw.url}/api/x`, bearer(moved))).status, 200)
  t.equal(idp.discoveryFetches, 2)
  t.equal(next.fetches, 1)
})
