// Expect: 100-continue (issue 16, item 10; RFC 9110 §10.1.1): the gateway admits the request
// before it invites the body, so a refusal (no token: 401; a declared body over the limit: 413)
// is answered without a 100 and without the body ever being sent; an allowed request gets
// 100 Continue, then the upstream's answer. And fastify's own 400 for a target it cannot decode
// does not echo that target (item 15).
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { bearer, gateway, issuer, policy, upstream } from '../support/harness.js'

const ROUTES = `
  - { path: /public/**, upstream: orders, auth: none, max_body_bytes: 100 }
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
`

/** Sends a head with Expect: 100-continue and no body; resolves with what arrives first (up to the first blank line). */
function expectContinue(
  port: number,
  target: string,
  headers: Record<string, string>,
  length: number,
): Promise<{ socket: Socket; first: string; data: () => string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    let resolved = false
    socket.setEncoding('latin1')
    const limit = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer to the head; received: ${data}`))
    }, 5000)
    socket.on('error', () => {})
    socket.on('data', (d: string) => {
      data += d
      if (!resolved && data.includes('\r\n\r\n')) {
        resolved = true
        clearTimeout(limit)
        resolve({ socket, first: data.slice(0, data.indexOf('\r\n\r\n')), data: () => data })
      }
    })
    const head = Object.entries({ Host: '127.0.0.1', Expect: '100-continue', 'Content-Length': String(length), ...headers })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')
    socket.write(`POST ${target} HTTP/1.1\r\n${head}\r\n`)
  })
}

/** Resolves when the server closes the connection; bounded, so a gateway that keeps it open fails the test instead of hanging it. */
const closed = (socket: Socket) =>
  new Promise<void>((resolve, reject) => {
    if (socket.destroyed) return resolve()
    const limit = setTimeout(() => {
      socket.destroy()
      reject(new Error('the connection was not closed within 5 s'))
    }, 5000)
    socket.once('close', () => {
      clearTimeout(limit)
      resolve()
    })
  })

t.test('Expect: 100-continue is answered after the admission', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))

  t.test('no token: 401 at once, never 100', async (t) => {
    const before = up.received.length
    const res = await expectContinue(gw.port, '/api/orders', {}, 10)
    t.match(res.first, /^HTTP\/1\.1 401 /)
    await closed(res.socket)
    t.notMatch(res.data(), /100 Continue/)
    t.match(res.data(), /"error":"missing_token"/)
    t.equal(up.received.length, before)
  })

  t.test('a declared body over max_body_bytes: 413 at once, never 100', async (t) => {
    const res = await expectContinue(gw.port, '/public/upload', {}, 1000)
    t.match(res.first, /^HTTP\/1\.1 413 /)
    await closed(res.socket)
    t.notMatch(res.data(), /100 Continue/)
    t.match(res.data(), /"error":"body_too_large"/)
  })

  t.test('an allowed request: 100, then the body, then the upstream answer', async (t) => {
    for (const [target, headers] of [
      ['/public/upload', {}],
      ['/api/orders', bearer(idp.sign({ sub: 'alice', aud: 'orders-api' }))],
    ] as const) {
      const res = await expectContinue(gw.port, target, { Connection: 'close', ...headers }, 5)
      t.equal(res.first, 'HTTP/1.1 100 Continue', target)
      res.socket.write('hello')
      await closed(res.socket)
      t.match(res.data(), /\r\n\r\nHTTP\/1\.1 200 /, 'the final answer follows')
      t.equal(up.received.at(-1)!.body, 'hello')
      t.equal(up.received.at(-1)!.headers.expect, undefined, 'Expect is hop-by-hop: not forwarded')
    }
  })
})

t.test("fastify's 400 for a target it cannot decode does not echo the target", async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  const socket = connect(gw.port, '127.0.0.1')
  let data = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => {
    data += d
  })
  socket.write('GET /public/%E0%A4%A_secret-marker HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  await closed(socket)
  t.match(data, /^HTTP\/1\.1 400 /)
  t.match(data, /"error":"bad_path"/)
  t.notMatch(data, /secret-marker/)
})
