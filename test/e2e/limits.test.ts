// Limits with clear status codes, over real HTTP and raw sockets: token length (401), header
// section (431), request body per route (413, declared or streamed; the upstream never gets a
// cut-off body), upstream connection pool size. None of them crashes or wedges the gateway.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { errorOf, exchange, firstResponseWhole, send } from '../hardening/raw.js'
import { gateway, get, issuer, policy, policyProblems, upstream } from '../support/harness.js'

const ROUTES = `
  - { path: /small/**, upstream: orders, auth: none, max_body_bytes: 1000 }
  - { path: /unlimited/**, upstream: orders, auth: none, max_body_bytes: 0 }
  - { path: /default/**, upstream: orders, auth: none }
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
`

function chunked(target: string, chunks: string[]): string {
  return (
    `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n` +
    chunks.map((c) => `${Buffer.byteLength(c).toString(16)}\r\n${c}\r\n`).join('') +
    '0\r\n\r\n'
  )
}

t.test('request bodies: 413 above the route limit, declared or streamed', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, extra: 'limits: { max_body_bytes: 5000 }' }))

  t.test('a declared Content-Length over the limit is refused before anything is forwarded', async (t) => {
    const before = up.received.length
    const res = await send(gw.port, { method: 'POST', target: '/small/x', headers: [['Connection', 'keep-alive']], body: 'x'.repeat(1001) })
    t.equal(res.status, 413)
    t.equal(errorOf(res), 'body_too_large')
    t.equal(res.headers.connection, 'close', 'the rest of the body is not read')
    t.equal(up.received.length, before)
    // Only the head, no body at all: the declared length alone is enough to answer.
    const { responses } = await exchange(gw.port, 'POST /small/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n', undefined, firstResponseWhole)
    t.same(
      responses.map((r) => r.status),
      [413],
      'answered before the body is sent',
    )
    t.equal(up.received.length, before)
    const ok = await send(gw.port, { method: 'POST', target: '/small/x', body: 'x'.repeat(1000) })
    t.equal(ok.status, 200, 'exactly the limit passes')
    t.equal(up.received.at(-1)!.body.length, 1000)
  })

  t.test('a chunked body is counted as it streams; the upstream never receives it whole', async (t) => {
    const before = up.received.length
    const { responses } = await exchange(gw.port, chunked('/small/x', ['a'.repeat(600), 'b'.repeat(600), 'c'.repeat(600)]), undefined, firstResponseWhole)
    t.same(
      responses.map((r) => r.status),
      [413],
    )
    t.equal(errorOf(responses[0]!), 'body_too_large')
    t.equal(up.received.length, before, 'the upstream request was aborted, not completed with a cut-off body')
    const ok = await exchange(gw.port, chunked('/small/x', ['a'.repeat(500), 'b'.repeat(500)]), undefined, firstResponseWhole)
    t.same(
      ok.responses.map((r) => r.status),
      [200],
    )
    t.equal(up.received.at(-1)!.body, 'a'.repeat(500) + 'b'.repeat(500))
  })

  t.test("limits.max_body_bytes is the default; 0 turns a route's limit off", async (t) => {
    t.equal((await send(gw.port, { method: 'PUT', target: '/default/x', body: 'x'.repeat(5001) })).status, 413)
    t.equal((await send(gw.port, { method: 'PUT', target: '/default/x', body: 'x'.repeat(5000) })).status, 200)
    const big = await send(gw.port, { method: 'PUT', target: '/unlimited/x', body: 'x'.repeat(200_000) })
    t.equal(big.status, 200)
    t.equal(up.received.at(-1)!.body.length, 200_000)
  })

  t.test('a refused body does not hide an auth failure, and the gateway keeps serving', async (t) => {
    const res = await send(gw.port, { method: 'POST', target: '/api/x', body: 'x'.repeat(6000) })
    t.equal(res.status, 401, 'the token is checked first: no token, no information about limits')
    t.equal((await get(`${gw.url}/default/x`)).status, 200)
  })
})

t.test('tokens and header sections', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES, extra: 'max_token_bytes: 1024\nlimits: { max_header_bytes: 8192 }' }))
  let res = await send(gw.port, { target: '/api/x', headers: [['Authorization', `Bearer ${'a'.repeat(1025)}`]] })
  t.equal(res.status, 401)
  t.equal(errorOf(res), 'token_too_large')
  res = await send(gw.port, { target: '/default/x', headers: [['X-Big', 'x'.repeat(9000)]] })
  t.equal(res.status, 431, 'a header section over limits.max_header_bytes')
  t.equal((await get(`${gw.url}/default/x`)).status, 200, 'the gateway keeps serving')
  t.equal(up.received.filter((r) => r.headers['x-big']).length, 0)

  const roomy = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  // x-auth-* is stripped before forwarding, so the (Node-default) upstream sees a small request.
  res = await send(roomy.port, { target: '/default/x', headers: [['X-Auth-Big', 'x'.repeat(24_000)]] })
  t.equal(res.status, 200, 'by default 32 KiB of headers pass (Node alone stops at 16 KiB)')
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', pad: 'x'.repeat(11_000) })
  t.ok(token.length > 14_000 && token.length < 16_384)
  t.equal((await send(roomy.port, { target: '/api/x', headers: [['Authorization', `Bearer ${token}`]] })).status, 200, 'a 15 KB token is accepted by default')
})

t.test('limits that contradict each other are refused at load', async (t) => {
  const text = `version: 1
listen: { port: 0 }
upstreams: { orders: { url: "http://127.0.0.1:1" } }
max_token_bytes: 16384
limits: { max_header_bytes: 16384 }
routes: [ { path: /x, upstream: orders, auth: none } ]
`
  t.match(policyProblems(text), [/^4:\d+ max_token_bytes \(16384\) must be less than limits\.max_header_bytes \(16384\)/])
})

t.test('upstream connections: the pool never opens more than its size', async (t) => {
  let inFlight = 0
  let most = 0
  const sockets = new Set<unknown>()
  const slow = createServer((req, res) => {
    sockets.add(req.socket)
    inFlight++
    most = Math.max(most, inFlight)
    // Held until three requests were asked for, so a pool of more than one would overlap them.
    setTimeout(() => {
      inFlight--
      res.end('ok')
    }, 150)
  })
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        slow.closeAllConnections()
        slow.close(() => resolve())
      }),
  )
  const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`
  const idp = await issuer(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: { url } as never, routes: ROUTES }).replace('timeout: 2s }', 'timeout: 5s, connections: 1 }'))
  const statuses = await Promise.all([1, 2, 3].map(() => get(`${gw.url}/default/x`).then((r) => r.status)))
  t.same(statuses, [200, 200, 200], 'queued requests are all answered')
  t.equal(most, 1, 'one at a time')
  t.equal(sockets.size, 1, 'over one connection')
})
