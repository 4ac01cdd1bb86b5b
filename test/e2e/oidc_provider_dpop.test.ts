// DPoP end to end against the certified OpenID provider `oidc-provider` (started on 127.0.0.1):
// the client gets a DPoP-bound access token by client credentials with a real proof, then calls
// the gateway with proofs built by jose. Every case of issue 17's list.
import { generateKeyPairSync, sign } from 'node:crypto'
import { exportJWK, SignJWT } from 'jose'
import t from 'tap'
import { servePort } from '../support/cli.js'
import { dpopClient, dpopHeaders, type DpopClient } from '../support/dpop.js'
import { bearer, gateway, get, rawGet, rawRequest, sleep, tempFile, upstream } from '../support/harness.js'
import { providerPolicy, startProvider, type TestProvider } from '../support/oidc_provider.js'
import { redisTest, startRedis } from '../revocation/redis_server.js'

function dpopPolicy(idp: TestProvider, upstreamUrl: string, extra = ''): string {
  return providerPolicy(idp, upstreamUrl, {
    issuerExtra: '    binding: { method: dpop, required: true }',
    extra,
    routes: '  - { path: /api/**, upstream: orders, auth: { issuers: [idp], typ: at+jwt, scopes: [orders:read] } }',
  })
}

t.test('oidc-provider issues a DPoP-bound token; the gateway takes it only with a valid proof', async (t) => {
  const idp = await startProvider(t)
  const up = await upstream(t)
  const gw = await gateway(t, dpopPolicy(idp, up.url))
  const client = await dpopClient()
  const issued = await idp.token({ dpop: client })
  t.equal(issued.status, 200, JSON.stringify(issued.body))
  t.equal(issued.tokenType, 'DPoP', 'oidc-provider bound it')
  const token = issued.token
  const url = `${gw.url}/api/orders`
  const proof = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, by: DpopClient = client) =>
    by.proof('GET', url, token, claims, header)
  const call = async (headers: Record<string, string>, target = url) => get(target, headers)
  const refused = async (what: string, headers: Record<string, string>, reason: string) => {
    const res = await call(headers)
    t.equal(res.status, 401, what)
    t.equal(res.json.error, reason, `${what}: ${res.json.message}`)
  }

  t.test('valid', async (t) => {
    const res = await call(dpopHeaders(token, await proof()))
    t.equal(res.status, 200)
    t.equal(up.received.at(-1)!.headers['x-client-id'], 'orders-service')
    t.equal(up.received.at(-1)!.headers['x-token-binding'], 'dpop')
    // The query is not part of htu: a proof naming another query (or none) is for the same resource.
    const withQuery = await get(`${url}?page=2`, dpopHeaders(token, await client.proof('GET', `${url}?page=1`, token)))
    t.equal(withQuery.status, 200, 'query ignored')
  })
  t.test('wrong htm', async () => refused('POST proof for GET', dpopHeaders(token, await proof({ htm: 'POST' })), 'invalid_dpop_proof'))
  t.test('wrong htu', async () => {
    await refused('another path', dpopHeaders(token, await proof({ htu: `${gw.url}/api/other` })), 'invalid_dpop_proof')
    await refused('another host', dpopHeaders(token, await proof({ htu: url.replace('127.0.0.1', 'localhost') })), 'invalid_dpop_proof')
    await refused('another scheme', dpopHeaders(token, await proof({ htu: url.replace('http:', 'https:') })), 'invalid_dpop_proof')
  })
  t.test('stale and future iat', async () => {
    const now = Math.floor(Date.now() / 1000)
    await refused('iat 2 minutes ago', dpopHeaders(token, await proof({ iat: now - 120 })), 'invalid_dpop_proof')
    await refused('iat in 2 minutes', dpopHeaders(token, await proof({ iat: now + 120 })), 'invalid_dpop_proof')
  })
  t.test('replayed jti', async (t) => {
    const once = await proof()
    t.equal((await call(dpopHeaders(token, once))).status, 200)
    await refused('the same proof again', dpopHeaders(token, once), 'proof_replayed')
  })
  t.test('missing or wrong ath', async () => {
    await refused('no ath', dpopHeaders(token, await proof({ ath: undefined })), 'invalid_dpop_proof')
    await refused('ath of another token', dpopHeaders(token, await proof({ ath: 'x'.repeat(43) })), 'invalid_dpop_proof')
  })
  t.test('a proof key that is not cnf.jkt', async () => refused('another key', dpopHeaders(token, await proof({}, {}, await dpopClient())), 'binding_mismatch'))
  t.test('alg none and HS256 proofs', async () => {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
    const claims = { jti: 'none-1', htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000) }
    await refused('alg none', dpopHeaders(token, `${b64({ alg: 'none', typ: 'dpop+jwt', jwk: client.jwk })}.${b64(claims)}.`), 'invalid_dpop_proof')
    const hs256 = await new SignJWT({ ...claims, jti: 'hs-1' })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: client.jwk })
      .sign(new TextEncoder().encode('k'.repeat(32)))
    await refused('HS256', dpopHeaders(token, hs256), 'invalid_dpop_proof')
  })
  t.test('private key material in the jwk', async () => {
    await refused('jwk with d', dpopHeaders(token, await proof({}, { jwk: await exportJWK(client.privateKey) })), 'invalid_dpop_proof')
  })
  t.test('two DPoP headers', async (t) => {
    const port = Number(new URL(gw.url).port)
    const lines = ['GET /api/orders HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Connection: close', `Authorization: DPoP ${token}`]
    const res = await rawRequest(port, [...lines, `DPoP: ${await proof()}`, `DPoP: ${await proof()}`, '', ''].join('\r\n'))
    t.equal(res.status, 401)
    t.match(res.body, /"error":"invalid_dpop_proof"/)
  })
  t.test('the bound token sent as a Bearer token', async () => refused('Bearer', bearer(token), 'binding_mismatch'))
  t.test('a proof signed by hand with an RSA key too short', async () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 })
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
    const input = `${b64({ alg: 'RS256', typ: 'dpop+jwt', jwk: weak.publicKey.export({ format: 'jwk' }) })}.${b64({ jti: 'w', htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000) })}`
    await refused('RSA 1024', dpopHeaders(token, `${input}.${sign('sha256', Buffer.from(input), weak.privateKey).toString('base64url')}`), 'invalid_dpop_proof')
  })
})

t.test('nonce required: missing and stale nonces get use_dpop_nonce with a fresh one; an older valid one learns the newest', async (t) => {
  const idp = await startProvider(t)
  const up = await upstream(t)
  // A three-second lifetime (its own step, under a minute), so that a nonce ages within the test:
  // handed out in step s, it is the newest in s, still accepted in s + 1, stale from s + 2.
  const stepMs = 3000
  const gw = await gateway(t, dpopPolicy(idp, up.url, 'dpop: { nonce: { secret: "${NONCE}", lifetime: 3s } }'), { NONCE: 'z'.repeat(32) })
  const client = await dpopClient()
  const { token } = await idp.token({ dpop: client })
  const url = `${gw.url}/api/orders`
  const send = async (nonce?: string) => get(url, dpopHeaders(token, await client.proof('GET', url, token, nonce ? { nonce } : {})))
  // Starts just after a step begins, so each request below is well inside the step it is meant for.
  const untilStep = (n: number) => sleep(Math.max(0, (Math.floor(Date.now() / stepMs) + n) * stepMs + 100 - Date.now()))
  await untilStep(1)
  const missing = await send()
  t.equal(missing.status, 401)
  t.equal(missing.json.error, 'use_dpop_nonce')
  const nonce = missing.headers.get('dpop-nonce')!
  const ok = await send(nonce)
  t.equal(ok.status, 200)
  t.equal(ok.headers.get('dpop-nonce'), null, 'the newest nonce: nothing new to learn')
  await untilStep(1)
  const older = await send(nonce)
  t.equal(older.status, 200, 'still accepted one step later')
  const newest = older.headers.get('dpop-nonce')
  t.match(newest, /^[A-Za-z0-9_-]{43}$/, 'and the answer hands the newest')
  t.not(newest, nonce)
  await untilStep(1)
  const stale = await send(nonce)
  t.equal(stale.status, 401)
  t.equal(stale.json.error, 'use_dpop_nonce')
  const fresh = stale.headers.get('dpop-nonce')!
  t.not(fresh, nonce)
  t.equal((await send(fresh)).status, 200)
})

redisTest(t, 'a replayed proof is refused across two gateway processes sharing Redis', async (t) => {
  const redis = await startRedis(t)
  const idp = await startProvider(t)
  const up = await upstream(t)
  const file = tempFile(
    'policy.yaml',
    dpopPolicy(idp, up.url, `revocation: { backend: redis, redis: { url: "${redis.url}" } }`).replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: false'),
  )
  const [a, b] = await Promise.all([servePort(t, file), servePort(t, file)])
  const client = await dpopClient()
  const { token } = await idp.token({ dpop: client })
  // Both processes behind one name, as behind a load balancer.
  const host = 'orders.example'
  const send = async (port: number, proof: string) => rawGet(port, '/api/orders', { Host: host, Authorization: `DPoP ${token}`, DPoP: proof })
  const proof = await client.proof('GET', `http://${host}/api/orders`, token)
  t.equal((await send(a, proof)).status, 200)
  const replayed = await send(b, proof)
  t.equal(replayed.status, 401)
  t.match(replayed.body, /"error":"proof_replayed"/)
})
