// DPoP-bound tokens (RFC 9449) through a gateway started from YAML: tokens with cnf.jkt from a
// real key set, proofs from jose, a real upstream recording what reached it.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { bearer, gateway, get, issuer, policy, policyProblems, rawRequest, upstream } from '../support/harness.js'
import { dpopClient, dpopHeaders } from '../support/dpop.js'

const ROUTES = `
  - { path: /dpop/**, upstream: orders, auth: { issuers: [idp], binding: { method: dpop, required: true } } }
  - { path: /either/**, upstream: orders, auth: { issuers: [idp], binding: { method: dpop } } }
  - { path: /plain/**, upstream: orders, auth: { issuers: [idp] } }
  - { path: /proof/**, upstream: orders, forward_dpop_proof: true, auth: { issuers: [idp], binding: { method: dpop } } }`

type Teardown = { teardown(fn: () => unknown): void }

/** An issuer, an upstream and a gateway with these routes (and policy lines), and a DPoP client with a token bound to its key. */
async function start(t: Teardown, routes: string, more: { extra?: string; issuerExtra?: string; env?: Record<string, string>; alg?: string } = {}) {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes, extra: more.extra, issuerExtra: more.issuerExtra }), more.env)
  const client = await dpopClient(more.alg)
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', cnf: { jkt: client.jkt } })
  return { idp, up, gw, client, token }
}

async function setup(t: Teardown) {
  return start(t, ROUTES, { extra: 'binding_header: x-token-binding' })
}

t.test('a DPoP-bound token with a valid proof reaches the upstream, which learns the binding and sees neither token nor proof', async (t) => {
  const { up, gw, client, token } = await setup(t)
  const url = `${gw.url}/dpop/orders?page=2`
  const res = await get(url, dpopHeaders(token, await client.proof('GET', `${gw.url}/dpop/orders`, token)))
  t.equal(res.status, 200, JSON.stringify(res.json))
  const seen = up.received.at(-1)!
  t.equal(seen.headers['x-user-id'], 'alice')
  t.equal(seen.headers['x-token-binding'], 'dpop')
  t.equal(seen.headers.dpop, undefined, 'the proof is not passed on')
  t.equal(seen.headers.authorization, undefined)
  // The token is cached now: each request still needs its own proof.
  const again = await get(url, dpopHeaders(token, await client.proof('GET', `${gw.url}/dpop/orders`, token)))
  t.equal(again.status, 200)
  const withoutProof = await get(url, { authorization: `DPoP ${token}` })
  t.equal(withoutProof.status, 401)
  t.equal(withoutProof.json.error, 'invalid_dpop_proof')
  t.match(
    withoutProof.headers.get('www-authenticate'),
    /^DPoP realm="jwtgate", error="invalid_dpop_proof", error_description="[^"]+", algs="ES256 ES384 PS256 RS256 EdDSA Ed25519"$/,
  )
})

t.test('a proof is refused for another request, another token, a second use, or another key', async (t) => {
  const { idp, gw, client, token } = await setup(t)
  const url = `${gw.url}/dpop/orders`
  const cases: Array<[string, string, string]> = [
    ['htm', await client.proof('POST', url, token), 'invalid_dpop_proof'],
    ['htu path', await client.proof('GET', `${gw.url}/dpop/other`, token), 'invalid_dpop_proof'],
    ['htu host', await client.proof('GET', url.replace('127.0.0.1', 'localhost'), token), 'invalid_dpop_proof'],
    ['ath', await client.proof('GET', url, idp.sign({ sub: 'bob' })), 'invalid_dpop_proof'],
    ['stale iat', await client.proof('GET', url, token, { iat: Math.floor(Date.now() / 1000) - 600 }), 'invalid_dpop_proof'],
    ['other key', await (await dpopClient()).proof('GET', url, token), 'binding_mismatch'],
  ]
  for (const [what, proof, reason] of cases) {
    const res = await get(url, dpopHeaders(token, proof))
    t.equal(res.status, 401, what)
    t.equal(res.json.error, reason, what)
  }
  const proof = await client.proof('GET', url, token)
  t.equal((await get(url, dpopHeaders(token, proof))).status, 200)
  const replay = await get(url, dpopHeaders(token, proof))
  t.equal(replay.status, 401)
  t.equal(replay.json.error, 'proof_replayed')
})

t.test('exactly one DPoP header', async (t) => {
  const { gw, client, token } = await setup(t)
  const port = Number(new URL(gw.url).port)
  const url = `${gw.url}/dpop/orders`
  const head = (proofs: string[]) =>
    [
      'GET /dpop/orders HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Connection: close',
      `Authorization: DPoP ${token}`,
      ...proofs.map((p) => `DPoP: ${p}`),
      '',
      '',
    ].join('\r\n')
  const two = await rawRequest(port, head([await client.proof('GET', url, token), await client.proof('GET', url, token)]))
  t.equal(two.status, 401)
  t.match(two.body, /"error":"invalid_dpop_proof".*more than one DPoP header/)
  t.equal((await rawRequest(port, head([await client.proof('GET', url, token)]))).status, 200)
})

t.test('downgrade: a DPoP-bound token sent as a bearer token is refused where binding is checked, and accepted as before where it is not', async (t) => {
  const { up, gw, token } = await setup(t)
  const res = await get(`${gw.url}/either/x`, bearer(token))
  t.equal(res.status, 401)
  t.equal(res.json.error, 'binding_mismatch')
  // Both schemes are accepted there: both challenges, the error on the Bearer one (the scheme used).
  const challenges = res.headers.get('www-authenticate')!
  t.match(challenges, /^DPoP realm="jwtgate", algs="[^"]+", Bearer realm="jwtgate", error="invalid_token"/)
  // A route without binding: nothing changed.
  t.equal((await get(`${gw.url}/plain/x`, bearer(token))).status, 200)
  t.equal(up.received.at(-1)!.headers['x-token-binding'], 'none')
  const dpopScheme = await get(`${gw.url}/plain/x`, { authorization: `DPoP ${token}` })
  t.equal(dpopScheme.status, 401)
  t.equal(dpopScheme.json.error, 'malformed')
  t.equal(dpopScheme.headers.get('www-authenticate')?.startsWith('Bearer '), true)
})

t.test('required refuses an unbound token; otherwise an unbound bearer token passes, marked none', async (t) => {
  const { idp, up, gw, client } = await setup(t)
  const unbound = idp.sign({ sub: 'carol', aud: 'orders-api' })
  const res = await get(`${gw.url}/dpop/x`, bearer(unbound))
  t.equal(res.status, 401)
  t.equal(res.json.error, 'unbound_token')
  t.match(
    res.headers.get('www-authenticate'),
    /^DPoP realm="jwtgate", error="invalid_token".*algs=/,
    'only the DPoP challenge: bearer tokens are not accepted here',
  )
  t.equal((await get(`${gw.url}/either/x`, bearer(unbound))).status, 200)
  t.equal(up.received.at(-1)!.headers['x-token-binding'], 'none')
  // An unbound token with the DPoP scheme, even with a good proof, is not what it claims.
  const url = `${gw.url}/either/x`
  const lying = await get(url, dpopHeaders(unbound, await client.proof('GET', url, unbound)))
  t.equal(lying.status, 401)
  t.equal(lying.json.error, 'binding_mismatch')
  const missing = await get(url)
  t.equal(missing.status, 401)
  t.same(missing.headers.get('www-authenticate'), `DPoP realm="jwtgate", algs="ES256 ES384 PS256 RS256 EdDSA Ed25519", Bearer realm="jwtgate"`)
})

t.test('forward_dpop_proof passes the proof on', async (t) => {
  const { up, gw, client, token } = await setup(t)
  const url = `${gw.url}/proof/x`
  const proof = await client.proof('GET', url, token)
  t.equal((await get(url, dpopHeaders(token, proof))).status, 200)
  t.equal(up.received.at(-1)!.headers.dpop, proof)
})

t.test('the policy: binding on an issuer applies to its routes; a route binding replaces it', async (t) => {
  const routes = `
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
  - { path: /open/**, upstream: orders, auth: { issuers: [idp], binding: { method: none } } }`
  const { idp, gw, client, token } = await start(t, routes, { issuerExtra: '    binding: { method: dpop, required: true }', alg: 'EdDSA' })
  const unbound = idp.sign({ sub: 'carol', aud: 'orders-api' })
  t.equal((await get(`${gw.url}/api/x`, bearer(unbound))).json.error, 'unbound_token')
  t.equal((await get(`${gw.url}/open/x`, bearer(unbound))).status, 200)
  t.equal((await get(`${gw.url}/api/x`, dpopHeaders(token, await client.proof('GET', `${gw.url}/api/x`, token)))).status, 200)
})

t.test('nonces: a proof without one gets use_dpop_nonce and the nonce; the retry with it passes', async (t) => {
  const { gw, client, token } = await start(t, `  - { path: /api/**, upstream: orders, auth: { issuers: [idp], binding: { method: dpop, required: true } } }`, {
    extra: 'dpop: { nonce: { secret: "${NONCE_SECRET}" } }',
    env: { NONCE_SECRET: 'n'.repeat(32) },
  })
  const url = `${gw.url}/api/x`
  const first = await get(url, dpopHeaders(token, await client.proof('GET', url, token)))
  t.equal(first.status, 401)
  t.equal(first.json.error, 'use_dpop_nonce')
  t.match(first.headers.get('www-authenticate'), /^DPoP realm="jwtgate", error="use_dpop_nonce", error_description="the DPoP proof needs a nonce", algs="/)
  const nonce = first.headers.get('dpop-nonce')
  t.match(nonce, /^[A-Za-z0-9_-]{43}$/)
  t.equal((await get(url, dpopHeaders(token, await client.proof('GET', url, token, { nonce })))).status, 200)
  // A nonce made with another secret (or an old one) is answered like a missing one.
  const forged = await get(url, dpopHeaders(token, await client.proof('GET', url, token, { nonce: 'A'.repeat(43) })))
  t.equal(forged.json.error, 'use_dpop_nonce')
  t.equal(forged.headers.get('dpop-nonce'), nonce)
})

t.test('the policy: nonces with several workers need a shared secret; the binding header is not an identity header', async (t) => {
  const idp = { url: 'https://idp.example/', jwksUri: 'https://idp.example/jwks' } as Parameters<typeof policy>[0]['issuer']
  const up = { url: 'http://127.0.0.1:1' } as Parameters<typeof policy>[0]['upstream']
  const routes = '  - { path: /api/**, upstream: orders, auth: { issuers: [idp], binding: { method: dpop } } }'
  t.match(policyProblems(policy({ issuer: idp, upstream: up, routes, extra: 'workers: 2\ndpop: { nonce: {} }' })), [/needs a secret .* every worker shares/])
  t.same(policyProblems(policy({ issuer: idp, upstream: up, routes, extra: 'workers: 2\ndpop: { nonce: { secret: "' + 's'.repeat(32) + '" } }' })), [])
  t.match(policyProblems(policy({ issuer: idp, upstream: up, routes, extra: 'binding_header: x-user-id' })), [/x-user-id is also an identity header/])
  t.match(policyProblems(policy({ issuer: idp, upstream: up, routes, extra: 'binding_header: host' })), [/cannot be the binding header/])
})

t.test('WebSockets: the upgrade request needs its proof like any request', async (t) => {
  const server = createServer()
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket) => socket.on('message', (data) => socket.send(data)))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const c of wss.clients) c.terminate()
    wss.close()
    server.closeAllConnections()
    server.close()
  })
  const wsUpstream = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
  const routes = '  - { path: /live/**, upstream: orders, websocket: true, auth: { issuers: [idp], binding: { method: dpop, required: true } } }'
  const idp = await issuer(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: wsUpstream as Parameters<typeof policy>[0]['upstream'], routes }))
  const client = await dpopClient()
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', cnf: { jkt: client.jkt } })
  const url = `${gw.url}/live/feed`
  const open = (headers: Record<string, string>) =>
    new Promise<{ ws?: WebSocket; status?: number }>((resolve) => {
      const ws = new WebSocket(url.replace('http:', 'ws:'), { headers })
      ws.once('open', () => resolve({ ws }))
      ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode }))
      ws.once('error', () => resolve({}))
    })
  const opened = await open(dpopHeaders(token, await client.proof('GET', url, token)))
  t.ok(opened.ws, 'a valid proof opens the socket')
  const echoed = await new Promise((resolve) => {
    opened.ws!.once('message', (data) => resolve(String(data)))
    opened.ws!.send('ping')
  })
  t.equal(echoed, 'ping')
  opened.ws!.close()
  t.equal((await open({ authorization: `DPoP ${token}` })).status, 401, 'no proof: 401 before any upgrade')
  t.equal((await open(bearer(token))).status, 401, 'the bound token as a bearer token')
  t.equal((await open(dpopHeaders(token, await client.proof('GET', `${gw.url}/live/other`, token)))).status, 401, 'a proof for another URL')
})
