// WebSockets through the gateway, against a real `ws` server on 127.0.0.1: the token is checked
// on the upgrade request, identity headers are injected (and client copies stripped), then the
// socket is proxied; a refused upgrade never opens a connection to the upstream.
import t from 'tap'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type ServerOptions } from 'node:https'
import { connect, type AddressInfo } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { testPki } from '../support/certs.js'
import { eventually, gateway, get, issuer, policy, policyProblems, rawRequest, sleep } from '../support/harness.js'

interface WsUpstream {
  url: string
  /** TCP connections accepted, upgraded or not. */
  connections: number
  /** The upgrade requests that became WebSockets. */
  upgrades: Array<{ url: string; headers: IncomingHttpHeaders }>
  /** Plain HTTP requests (an Upgrade the gateway did not pass on). */
  plain: Array<{ url: string; headers: IncomingHttpHeaders }>
  /** The close codes of the WebSockets that closed, as the upstream saw them. */
  closes: number[]
}

/** A WebSocket echo server; upgrades to /ws/refuse get 403 from it. */
async function wsUpstream(t: { teardown(fn: () => unknown): void }, tls?: ServerOptions): Promise<WsUpstream> {
  const up: WsUpstream = { url: '', connections: 0, upgrades: [], plain: [], closes: [] }
  const plain = (req: IncomingMessage, res: ServerResponse) => {
    up.plain.push({ url: req.url ?? '', headers: req.headers })
    res.writeHead(200, { 'content-type': 'text/plain' }).end('plain http')
  }
  const server = tls ? createHttpsServer(tls, plain) : createServer(plain)
  server.on('connection', () => {
    up.connections++
  })
  const wss = new WebSocketServer({
    server,
    verifyClient: (info, done) => (info.req.url?.startsWith('/ws/refuse') ? done(false, 403, 'refused by the upstream') : done(true)),
  })
  // A header with bytes 0x80-0xFF in the 101 (ws writes its header lines as UTF-8: C3 A9).
  wss.on('headers', (headers) => headers.push('X-Bytes: \u00e9'))
  wss.on('connection', (socket, req) => {
    up.upgrades.push({ url: req.url ?? '', headers: req.headers })
    socket.on('message', (data, binary) => socket.send(data, { binary }))
    socket.on('close', (code) => up.closes.push(code))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  up.url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate()
        wss.close()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return up
}

type Opened = { ws: WebSocket; headers: IncomingHttpHeaders } | { status: number; body: string; headers: IncomingHttpHeaders }

function open(url: string, headers: Record<string, string> = {}): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, handshakeTimeout: 5000 })
    let upgraded: IncomingHttpHeaders = {}
    ws.once('upgrade', (res) => {
      upgraded = res.headers
    })
    ws.once('open', () => resolve({ ws, headers: upgraded }))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
    })
    ws.once('error', reject)
  })
}

function echo(ws: WebSocket, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => resolve(String(data)))
    ws.once('error', reject)
    ws.send(message)
  })
}

/** Resolves with the close code and reason when the socket closes; rejects after `ms`, so a tunnel that stays open fails the test. */
function closed(ws: WebSocket, ms: number): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve({ code: 0, reason: '' })
    const timer = setTimeout(() => reject(new Error(`the socket was still open after ${ms} ms`)), ms)
    ws.once('close', (code, reason) => {
      clearTimeout(timer)
      resolve({ code, reason: String(reason) })
    })
  })
}

const ROUTES = `
  - { path: /ws/**, upstream: orders, auth: { issuers: [idp] }, websocket: true }
  - { path: /pub/ws, upstream: orders, auth: none, websocket: true }
  - { path: /browser/ws, upstream: orders, auth: { issuers: [idp] }, websocket: true, cors: { origins: ["https://app.example.com"] } }
  - { path: /plain/**, upstream: orders, auth: { issuers: [idp] } }
  - path: /own/ws
    upstream: orders
    websocket: true
    identity_headers: { x-user-roles: { claim: roles, join: "|" }, x-user-email: email }
    forward_payload_header: x-token-claims
    auth: { issuers: [idp], claims: { roles: { contains: reader } } }
  - path: /report/ws
    upstream: orders
    websocket: true
    mode: report
    auth: { issuers: [idp], claims: { roles: { contains: admin } } }
  - { path: /cookie/ws, upstream: orders, auth: { issuers: [idp] }, websocket: true, token_sources: [{ cookie: session }] }
`

t.test('a token in a query parameter opens the socket and never reaches the upstream', async (t) => {
  const idp = await issuer(t)
  const up = await wsUpstream(t)
  const routes = `
  - { path: /ws/**, upstream: orders, auth: { issuers: [idp] }, websocket: true, token_sources: [{ query: access_token }] }
`
  const gw = await gateway(t, policy({ issuer: idp, upstream: up as never, routes }))
  const token = idp.sign({ sub: 'alice', aud: 'orders-api' })
  const opened = await open(`${gw.url.replace(/^http/, 'ws')}/ws/chat?room=1&access_token=${token}&x=2`)
  if (!('ws' in opened)) return t.fail(`not opened: ${opened.status} ${opened.body}`)
  t.teardown(() => opened.ws.terminate())
  t.equal(await echo(opened.ws, 'hi'), 'hi')
  const seen = up.upgrades.at(-1)!
  t.equal(seen.url, '/ws/chat?room=1&x=2', 'the token parameter is removed, the rest kept')
  t.equal(seen.headers['x-user-id'], 'alice')
  t.notOk(JSON.stringify(seen).includes(token), 'the token reached the upstream nowhere')
})

t.test('WebSockets on routes with websocket: true', async (t) => {
  const idp = await issuer(t)
  const up = await wsUpstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up as never, routes: ROUTES }))
  const ws = (path: string) => `${gw.url.replace(/^http/, 'ws')}${path}`
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['reader'] })

  t.test('a valid token: the socket is proxied, with identity headers from the token only', async (t) => {
    const opened = await open(ws('/ws/chat?room=1'), {
      authorization: `Bearer ${token}`,
      'x-user-id': 'mallory',
      'X-User-Roles': 'admin',
      'x-auth-user': 'root',
    })
    if (!('ws' in opened)) return t.fail(`not opened: ${opened.status} ${opened.body}`)
    t.teardown(() => opened.ws.terminate())
    t.equal(await echo(opened.ws, 'hello'), 'hello')
    t.equal(await echo(opened.ws, 'x'.repeat(100_000)), 'x'.repeat(100_000), 'frames of any size pass both ways')
    const seen = up.upgrades.at(-1)!
    t.equal(seen.url, '/ws/chat?room=1', 'the normalized path and the query')
    t.equal(seen.headers['x-user-id'], 'alice')
    t.equal(seen.headers['x-user-roles'], 'reader', 'client-sent identity headers were replaced')
    t.equal(seen.headers['x-auth-user'], undefined, 'and reserved prefixes stripped')
    t.equal(seen.headers.authorization, undefined, 'forward_token: false by default')
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
    t.equal(seen.headers['x-forwarded-proto'], 'http')
    t.match(seen.headers['x-request-id'], /^[0-9a-f-]{36}$/)
    t.equal(opened.headers['x-request-id'], seen.headers['x-request-id'], 'the 101 carries the request id the upstream got')
    t.equal(seen.headers.host, new URL(up.url).host)
    t.match(
      gw.logs.lines.find((l) => l.status === 101),
      { route: '/ws/**', sub: 'alice', websocket: true },
    )
    t.notOk(gw.logs.text.includes(token), 'the token is not logged')
  })

  t.test('a missing or invalid token gets 401 before any upgrade; the upstream sees no connection', async (t) => {
    const before = up.connections
    for (const headers of [
      {} as Record<string, string>,
      { authorization: `Bearer ${token.slice(0, -4)}AAAA` },
      { authorization: `Bearer ${idp.sign({ sub: 'alice', aud: 'other' })}` },
    ]) {
      const res = await open(ws('/ws/chat'), headers)
      t.equal('status' in res && res.status, 401)
      t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'a refused upgrade carries its request id')
      t.match('status' in res && res.headers['www-authenticate'], /^Bearer realm="jwtgate"/)
    }
    const noRoute = await open(ws('/nowhere'), { authorization: `Bearer ${token}` })
    t.equal('status' in noRoute && noRoute.status, 404)
    t.equal(up.connections, before, 'no connection was opened to the upstream')
  })

  t.test('an upgrade gets the identity headers decide() computed for its route, as HTTP does', async (t) => {
    const tokenWithEmail = idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['reader', 'ops'], email: 'a@example.com' })
    const opened = await open(ws('/own/ws'), { authorization: `Bearer ${tokenWithEmail}`, 'x-user-email': 'forged', 'x-token-claims': 'forged' })
    if (!('ws' in opened)) return t.fail(`not opened: ${opened.status} ${opened.body}`)
    t.teardown(() => opened.ws.terminate())
    const seen = up.upgrades.at(-1)!.headers
    t.equal(seen['x-user-id'], 'alice', "the policy's identity header")
    t.equal(seen['x-user-roles'], 'reader|ops', "the route's own replaces the policy's")
    t.equal(seen['x-user-email'], 'a@example.com', "the route's own is added")
    t.match(JSON.parse(Buffer.from(String(seen['x-token-claims']), 'base64url').toString()), { sub: 'alice', email: 'a@example.com' }, 'the payload header')
    const plain = up.plain.length
    const refused = await open(ws('/own/ws'), { authorization: `Bearer ${idp.sign({ sub: 'bob', aud: 'orders-api', roles: ['guest'] })}` })
    t.equal('status' in refused && refused.status, 403, "the route's requirement is checked on the upgrade")
    t.equal(up.plain.length, plain, 'and nothing reached the upstream')
  })

  t.test('mode report: an upgrade is tunnelled whatever the decision, with the identity of a verified token only', async (t) => {
    const opened = await open(ws('/report/ws'), { authorization: `Bearer ${token}`, 'x-user-id': 'mallory' })
    if (!('ws' in opened)) return t.fail(`not opened: ${opened.status} ${opened.body}`)
    t.teardown(() => opened.ws.terminate())
    t.equal(up.upgrades.at(-1)!.headers['x-user-id'], 'alice', 'a token that only lacks the claim still gives its identity')
    const anonymous = await open(ws('/report/ws'), { 'x-user-id': 'mallory' })
    if (!('ws' in anonymous)) return t.fail(`not opened: ${anonymous.status} ${anonymous.body}`)
    t.teardown(() => anonymous.ws.terminate())
    t.equal(up.upgrades.at(-1)!.headers['x-user-id'], undefined, "no token, no identity: the client's copy is removed")
    const lines = gw.logs.lines.filter((l) => l.route === '/report/ws' && l.status === 101)
    t.match(lines, [
      { report: 'deny', report_status: 403, report_reason: 'insufficient_claims', sub: 'alice', websocket: true },
      { report: 'deny', report_status: 401, report_reason: 'missing_token', websocket: true },
    ])
  })

  t.test('auth: none routes tunnel without a token, still stripping identity headers', async (t) => {
    const opened = await open(ws('/pub/ws'), { 'x-user-id': 'mallory' })
    if (!('ws' in opened)) return t.fail(`not opened: ${opened.status}`)
    t.teardown(() => opened.ws.terminate())
    t.equal(await echo(opened.ws, 'hi'), 'hi')
    t.equal(up.upgrades.at(-1)!.headers['x-user-id'], undefined)
  })

  t.test('an upgrade on a route without websocket is served as plain HTTP, without Upgrade', async (t) => {
    const before = up.upgrades.length
    const res = await open(ws('/plain/x'), { authorization: `Bearer ${token}` })
    t.equal('status' in res && res.status, 200)
    t.equal('status' in res && res.body, 'plain http')
    t.equal(up.upgrades.length, before, 'no WebSocket was opened')
    t.equal(up.plain.at(-1)!.headers.upgrade, undefined)
    t.equal(up.plain.at(-1)!.headers['x-user-id'], 'alice')
    const denied = await open(ws('/plain/x'))
    t.equal('status' in denied && denied.status, 401, 'and checked like any request')
  })

  t.test('with cors on the route, only its origins may open a socket (cross-site WebSocket hijacking)', async (t) => {
    const evil = await open(ws('/browser/ws'), { authorization: `Bearer ${token}`, origin: 'https://evil.example' })
    t.equal('status' in evil && evil.status, 403)
    t.match('status' in evil && evil.body, /cors_rejected/)
    const app = await open(ws('/browser/ws'), { authorization: `Bearer ${token}`, origin: 'https://app.example.com' })
    t.ok('ws' in app, 'an allowed origin opens')
    if ('ws' in app) app.ws.terminate()
  })

  t.test('without cors, a cookie route opens a socket only for its own origin (cross-site WebSocket hijacking)', async (t) => {
    const cookie = `session=${token}`
    const before = up.upgrades.length
    for (const origin of ['https://evil.example', 'null', `http://127.0.0.1:${gw.port + 1}`, `https://127.0.0.1:${gw.port}`]) {
      const evil = await open(ws('/cookie/ws'), { cookie, origin })
      t.equal('status' in evil && evil.status, 403, origin)
      t.match('status' in evil && evil.body, /cors_rejected/)
    }
    t.equal(up.upgrades.length, before, 'no cross-origin socket reached the upstream')
    const own: Array<Record<string, string>> = [
      { cookie, origin: `http://127.0.0.1:${gw.port}` },
      { cookie, origin: `HTTP://127.0.0.1:${gw.port}` },
      { cookie },
    ]
    for (const headers of own) {
      const opened = await open(ws('/cookie/ws'), headers)
      t.ok('ws' in opened, `${headers.origin ?? 'no Origin (not a browser)'} opens`)
      if ('ws' in opened) opened.ws.terminate()
    }
  })

  t.test("the 101's header bytes 0x80-0xFF reach the client as the upstream sent them", async (t) => {
    const seen = await new Promise<string | undefined>((resolve, reject) => {
      const client = new WebSocket(ws('/pub/ws'), { handshakeTimeout: 5000 })
      client.once('upgrade', (res) => resolve(res.headers['x-bytes'] as string | undefined))
      client.once('open', () => client.terminate())
      client.once('error', reject)
    })
    // Node reads header bytes as latin1: the upstream's C3 A9 is 'Ã©' here, and was twice as long re-encoded.
    t.same(Buffer.from(seen ?? '', 'latin1'), Buffer.from([0xc3, 0xa9]))
  })

  t.test("the upstream's refusal of the upgrade is passed back", async (t) => {
    const res = await open(ws('/ws/refuse'), { authorization: `Bearer ${token}` })
    t.equal('status' in res && res.status, 403)
  })

  t.test('a client that goes away mid-handshake crashes nothing', async (t) => {
    for (let i = 0; i < 5; i++) {
      const socket = connect(gw.port, '127.0.0.1')
      socket.on('error', () => {})
      socket.write(
        `GET /ws/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      )
      socket.resetAndDestroy()
    }
    await sleep(100)
    const opened = await open(ws('/ws/after'), { authorization: `Bearer ${token}` })
    t.ok('ws' in opened, 'the gateway still serves')
    if ('ws' in opened) opened.ws.terminate()
  })

  t.test('an unreachable upstream is a 502', async (t) => {
    const dead = await gateway(t, policy({ issuer: idp, upstream: { url: 'http://127.0.0.1:1' } as never, routes: ROUTES }))
    const res = await open(`${dead.url.replace(/^http/, 'ws')}/ws/x`, { authorization: `Bearer ${token}` })
    t.equal('status' in res && res.status, 502)
    t.match('status' in res && res.body, /upstream_unreachable/)
    t.match('status' in res && JSON.parse(res.body), { error: 'upstream_unreachable', request_id: /./ }, 'the body names the request')
  })

  t.test('an upgrade request with a body gets 400 in the shape of every error answer', async (t) => {
    const before = up.plain.length
    // On a route without websocket, where the upgrade is served as plain HTTP.
    const res = await rawRequest(
      gw.port,
      `GET /plain/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${token}\r\n` +
        `X-Request-Id: upgrade-with-body\r\nContent-Length: 2\r\n\r\nhi`,
    )
    t.equal(res.status, 400)
    t.equal(res.headers['cache-control'], 'no-store')
    t.same(JSON.parse(res.body), { error: 'bad_request', message: 'an upgrade request with a body is not supported', request_id: 'upgrade-with-body' })
    t.equal(up.plain.length, before, 'nothing was forwarded')
  })
})

t.test('websocket: true on a route without GET is refused at load', async (t) => {
  t.match(
    policyProblems(`version: 1
listen: { port: 0 }
upstreams: { orders: { url: "http://127.0.0.1:1" } }
routes: [ { path: /ws, methods: [POST], upstream: orders, auth: none, websocket: true } ]
`),
    [/^4:\d+ websocket: true needs GET in methods/],
  )
})

t.test('a tunnel closes when its token stops being accepted (exp plus clock_skew)', async (t) => {
  const idp = await issuer(t)
  const up = await wsUpstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up as never, routes: ROUTES }))
  // The harness policy's clock_skew is 5s: a token 4s past exp is still accepted, for 1s more.
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', exp: Math.floor(Date.now() / 1000) - 4 })
  const opened = await open(`${gw.url.replace(/^http/, 'ws')}/ws/x`, { authorization: `Bearer ${token}` })
  if (!('ws' in opened)) return t.fail(`not opened: ${opened.status} ${opened.body}`)
  t.equal(await echo(opened.ws, 'still valid'), 'still valid')
  t.same(await closed(opened.ws, 10_000), { code: 1008, reason: 'token expired' }, 'closed by the gateway with a close frame: policy violation')
  await eventually('the upstream got the close frame too', 2000, async () => up.closes.length === 1)
  t.same(up.closes, [1008])
  await eventually('forgotten', 2000, async () => gw.gateway.upgraded.size === 0)
  t.match(
    gw.logs.lines.find((l) => l.msg === 'websocket closed: token expired'),
    { reason: 'expired', close_code: 1008, close_frame_to_client: true, close_frame_to_upstream: true },
  )
  t.match(await (await fetch(`${gw.adminUrl}/metrics`)).text(), /jwtgate_websocket_closed_total\{route="[^"]*\/ws\/\*\*",reason="expired"\} 1\n/)
})

t.test('a tunnel closes (1008) when its token is revoked; the others stay open', async (t) => {
  const idp = await issuer(t)
  const up = await wsUpstream(t)
  const adminToken = 'admin-token-for-the-websocket-test'
  const gw = await gateway(
    t,
    policy({ issuer: idp, upstream: up as never, routes: ROUTES, extra: `revocation: { backend: memory, admin_token: ${adminToken} }` }),
  )
  const wsUrl = `${gw.url.replace(/^http/, 'ws')}/ws/x`
  const open2 = async (claims: Record<string, unknown>) => {
    const opened = await open(wsUrl, { authorization: `Bearer ${idp.sign({ aud: 'orders-api', ...claims })}` })
    if (!('ws' in opened)) throw new Error(`not opened: ${opened.status} ${opened.body}`)
    t.teardown(() => opened.ws.terminate())
    return opened.ws
  }
  const byJti = await open2({ sub: 'alice', jti: 'ws-jti-1' })
  const bySub = await open2({ sub: 'bob', jti: 'ws-jti-2' })
  const other = await open2({ sub: 'carol', jti: 'ws-jti-3' })
  const revoke = (body: unknown) =>
    fetch(`${gw.adminUrl}/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  t.equal((await revoke({ jti: 'ws-jti-1', iss: '*' })).status, 201)
  t.same(await closed(byJti, 5000), { code: 1008, reason: 'token revoked' })
  t.equal((await revoke({ sub: 'bob', iss: idp.url })).status, 201)
  t.same(await closed(bySub, 5000), { code: 1008, reason: 'token revoked' })
  t.equal(await echo(other, 'still open'), 'still open', 'a tunnel of a token not revoked stays open')
  await eventually('the upstream got both close frames', 2000, async () => up.closes.length === 2)
  t.same(up.closes, [1008, 1008])
  t.equal(gw.logs.lines.filter((l) => l.msg === 'websocket closed: token revoked').length, 2)
  t.match(await (await fetch(`${gw.adminUrl}/metrics`)).text(), /jwtgate_websocket_closed_total\{route="[^"]*\/ws\/\*\*",reason="revoked"\} 2\n/)
})

t.test('shutdown closes open tunnels at the shutdown timeout', async (t) => {
  const idp = await issuer(t)
  const up = await wsUpstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up as never, routes: ROUTES, extra: 'shutdown: { drain_delay: 0s, timeout: 200ms }' }))
  const opened = await open(`${gw.url.replace(/^http/, 'ws')}/pub/ws`)
  if (!('ws' in opened)) return t.fail('not opened')
  const shutdown = gw.shutdown()
  await closed(opened.ws, 10_000)
  await shutdown
  t.pass('the tunnel was closed and the shutdown finished')
})

t.test('wss upstreams are verified like https ones', async (t) => {
  const pki = testPki()
  const cert = pki.issue('ws-upstream')
  const idp = await issuer(t)
  const up = await wsUpstream(t, { cert: cert.cert, key: cert.key })
  const untrusted = await gateway(t, policy({ issuer: idp, upstream: up as never, routes: ROUTES }))
  const res = await open(`${untrusted.url.replace(/^http/, 'ws')}/pub/ws`)
  t.equal('status' in res && res.status, 502, 'a certificate from an unknown CA')
  t.equal(up.upgrades.length, 0)
  const trusted = await gateway(
    t,
    policy({ issuer: idp, upstream: up as never, routes: ROUTES }).replace('timeout: 2s }', `timeout: 2s, tls: { ca_file: "${pki.ca.certFile}" } }`),
  )
  const opened = await open(`${trusted.url.replace(/^http/, 'ws')}/pub/ws`)
  t.ok('ws' in opened, 'with ca_file')
  if ('ws' in opened) {
    t.equal(await echo(opened.ws, 'tls'), 'tls')
    opened.ws.terminate()
  }
  t.equal((await get(`${trusted.url}/nowhere`)).status, 404)
})
