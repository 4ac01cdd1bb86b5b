// HTTP/2 listeners (listen.protocols): h2c with prior knowledge, h2c beside HTTP/1.1 on one port,
// h2 by ALPN beside HTTP/1.1 over TLS; the same request path as HTTP/1.1 for both versions; the
// host rules of RFC 9113 §8.3.1 and no h2c upgrade. Real node:http2 client sessions, fetch, curl.
import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { promisify } from 'node:util'
import http2 from 'node:http2'
import { request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { testPki } from '../support/certs.js'
import { bearer, eventually, gateway, get, issuer, policy, policyProblems, rawRequest, upstream } from '../support/harness.js'
import { h2Request, h2Session } from '../support/h2.js'

const ROUTES = `
  - { path: /public/**, upstream: orders, auth: none }
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
  - { path: /vhost/**, host: admin.example.test, upstream: orders, auth: { issuers: [idp] } }
  - { path: /vhost/**, upstream: orders, auth: none }
`

function withProtocols(yaml: string, protocols: string, tls = ''): string {
  return yaml.replace('listen: { host: 127.0.0.1, port: 0 }', `listen: { host: 127.0.0.1, port: 0, protocols: ${protocols}${tls} }`)
}

t.test('h2c with prior knowledge: the request path HTTP/1.1 requests take', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, withProtocols(policy({ issuer: idp, upstream: up, routes: ROUTES }), '[h2c]'))
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', roles: ['reader'] })
  const session = h2Session(t, gw.url)

  t.test('an allowed request reaches the upstream with identity headers, no pseudo-header fields, one Host', async (t) => {
    const res = await h2Request(session, { ':path': '/api/../api/./orders?x=1', ...bearer(token), 'x-user-id': 'mallory' })
    t.equal(res.status, 200)
    const seen = up.received.at(-1)!
    t.equal(seen.url, '/api/orders?x=1', 'the upstream sees the normalized path')
    t.equal(seen.headers['x-user-id'], 'alice', 'identity from the token, not from the client')
    t.equal(seen.headers['x-user-roles'], 'reader')
    t.notOk(
      Object.keys(seen.headers).some((name) => name.startsWith(':')),
      'no pseudo-header field is forwarded',
    )
    t.equal(seen.headers['x-forwarded-host'], new URL(gw.url).host, ':authority is the host')
    t.equal(seen.headers['x-forwarded-proto'], 'http')
    t.ok(res.headers['x-request-id'], 'every answer carries its request id')
  })

  t.test('identity headers cannot be spoofed over HTTP/2 either', async (t) => {
    const spoof = {
      'x-user-id': ['mallory', 'eve'],
      x_user_id: 'mallory',
      'x-user-roles': 'admin',
      'x-jwt-admin': 'true',
      'x-auth-user': 'root',
      'x-original-url': '/admin',
      'x-http-method-override': 'DELETE',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
    }
    const res = await h2Request(session, { ':path': '/api/spoof', ...bearer(token), ...spoof })
    t.equal(res.status, 200)
    const seen = up.received.at(-1)!.headers
    t.equal(seen['x-user-id'], 'alice', 'one value, from the token')
    t.equal(seen['x-user-roles'], 'reader')
    for (const name of ['x_user_id', 'x-jwt-admin', 'x-auth-user', 'x-original-url', 'x-http-method-override']) t.notOk(seen[name], `${name} is stripped`)
    t.equal(seen['x-forwarded-host'], new URL(gw.url).host, 'X-Forwarded-Host is the gateway’s')
    t.equal(seen['x-forwarded-proto'], 'http', 'X-Forwarded-Proto is the gateway’s')
    // Without a token on a public route, the same headers are stripped too.
    await h2Request(session, { ':path': '/public/spoof', ...spoof })
    const anonymous = up.received.at(-1)!.headers
    t.notOk(anonymous['x-user-id'])
    t.notOk(anonymous['x-user-roles'])
    t.notOk(anonymous.x_user_id)
  })

  t.test('a refusal is the same answer as over HTTP/1.1', async (t) => {
    const before = up.received.length
    const res = await h2Request(session, { ':path': '/api/orders' })
    t.equal(res.status, 401)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="jwtgate"')
    t.equal(JSON.parse(res.body).error, 'missing_token')
    const expired = await h2Request(session, { ':path': '/public/../api/x', ...bearer(idp.sign({ sub: 'a', aud: 'orders-api' }, { expiresInSeconds: -60 })) })
    t.equal(expired.status, 401)
    t.equal(JSON.parse(expired.body).error, 'expired')
    t.equal(up.received.length, before, 'nothing reached the upstream')
  })

  t.test('a body streams through to the upstream', async (t) => {
    const body = 'x'.repeat(200_000)
    const res = await h2Request(session, { ':method': 'POST', ':path': '/public/upload', 'content-type': 'text/plain' }, body)
    t.equal(res.status, 200)
    t.equal(up.received.at(-1)!.body.length, body.length)
  })

  t.test(':authority and Host naming different hosts: 400 bad_host, nothing forwarded', async (t) => {
    const before = up.received.length
    const split = await h2Request(session, { ':path': '/vhost/x', ':authority': 'public.example.test', host: 'admin.example.test' })
    t.equal(split.status, 400)
    t.equal(JSON.parse(split.body).error, 'bad_host')
    t.equal(up.received.length, before)
    // The host is :authority: a host-restricted route sees it.
    const vhost = await h2Request(session, { ':path': '/vhost/x', ':authority': 'admin.example.test' })
    t.equal(vhost.status, 401, 'the admin.example.test route, which wants a token')
    const same = await h2Request(session, { ':path': '/vhost/x', ':authority': 'Admin.example.test', host: 'admin.example.test' })
    t.equal(same.status, 401, 'the same host in both (case aside) is one host')
    t.equal(up.received.length, before)
  })

  t.test('HTTP/1.1 is not served on an h2c-only listener', async (t) => {
    await t.rejects(fetch(`${gw.url}/public/x`))
  })

  t.test(
    'curl --http2-prior-knowledge, where curl is installed',
    { skip: spawnSync('curl', ['--version']).status !== 0 && 'curl is not installed' },
    async (t) => {
      // Not execFileSync: the gateway answers from this process's event loop.
      const { stdout } = await promisify(execFile)('curl', [
        '-s',
        '--http2-prior-knowledge',
        '-o',
        '/dev/null',
        '-w',
        '%{http_version} %{http_code}',
        `${gw.url}/public/curl`,
      ])
      t.equal(stdout, '2 200')
    },
  )
})

t.test('http1 and h2c on one port; no h2c upgrade from HTTP/1.1', async (t) => {
  const up = await upstream(t)
  const idp = await issuer(t)
  const gw = await gateway(t, withProtocols(policy({ issuer: idp, upstream: up, routes: ROUTES }), '[http1, h2c]'))
  const h1 = await get(`${gw.url}/public/one`)
  t.equal(h1.status, 200, 'HTTP/1.1 on the port')
  t.equal(h1.json.url, '/public/one')
  const h2 = await h2Request(h2Session(t, gw.url), { ':path': '/public/two' })
  t.equal(h2.status, 200, 'h2c on the same port')
  t.equal(JSON.parse(h2.body).url, '/public/two')
  const upgrade = await rawRequest(
    gw.port,
    'GET /public/three HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n',
  )
  t.equal(upgrade.status, 200, 'answered over HTTP/1.1, not 101 Switching Protocols')
  t.notOk(JSON.parse(upgrade.body).headers['http2-settings'], 'HTTP2-Settings is hop-by-hop: not forwarded')
  t.notOk(JSON.parse(upgrade.body).headers.upgrade)
  // A connection that sends a few bytes of something else is HTTP/1.1 (and refused as such).
  const junk = await rawRequest(gw.port, 'PRX * HTTP/1.1\r\n\r\n')
  t.equal(junk.status, 400)
})

t.test('h2 by ALPN beside HTTP/1.1 over TLS', async (t) => {
  const pki = testPki()
  const cert = pki.issue('gateway')
  const up = await upstream(t)
  const idp = await issuer(t)
  const tls = `, tls: { cert_file: ${cert.certFile}, key_file: ${cert.keyFile} }`
  const gw = await gateway(t, withProtocols(policy({ issuer: idp, upstream: up, routes: ROUTES }), '[http1, h2]', tls))
  t.match(gw.url, /^https:/)
  const session = h2Session(t, gw.url, { ca: pki.ca.cert })
  const res = await h2Request(session, { ':path': '/public/tls' })
  t.equal(res.status, 200)
  t.equal((session.socket as unknown as { alpnProtocol: string }).alpnProtocol, 'h2')
  t.equal(up.received.at(-1)!.headers['x-forwarded-proto'], 'https', 'the request came over TLS')
  const h1 = await new Promise<{ status: number; alpn: unknown }>((resolve, reject) => {
    const req = httpsRequest(`${gw.url}/public/h1`, { ca: pki.ca.cert, agent: false }, (r) => {
      r.resume()
      r.on('end', () => resolve({ status: r.statusCode ?? 0, alpn: (r.socket as unknown as { alpnProtocol: unknown }).alpnProtocol }))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(h1.status, 200, 'an HTTP/1.1 client on the same port')

  t.test('with h2 alone, a client that cannot speak HTTP/2 gets no HTTP/1.1', async (t) => {
    // The HTTP/1.1 client is closed after the header time limit (Node's answer to no ALPN h2).
    const only = await gateway(t, withProtocols(policy({ issuer: idp, upstream: up, routes: ROUTES, extra: 'limits: { headers_timeout: 1s }' }), '[h2]', tls))
    const alpn = await new Promise<unknown>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: only.port, ca: pki.ca.cert, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        resolve(socket.alpnProtocol)
        socket.destroy()
      })
      socket.on('error', () => resolve('error'))
    })
    t.equal(alpn, 'h2')
    const before = up.received.length
    const status = await new Promise<number | string>((resolve) => {
      const req = httpsRequest(`${only.url}/public/h1`, { ca: pki.ca.cert, agent: false }, (r) => {
        r.resume()
        resolve(r.statusCode ?? 0)
      })
      req.on('error', () => resolve('error'))
      req.end()
    })
    t.not(status, 200, 'no HTTP/1.1 answer from the route')
    t.equal(up.received.length, before)
  })
})

t.test('listen.protocols: h2 needs tls, h2c goes without', async (t) => {
  const base = 'version: 1\nupstreams: { u: { url: "http://127.0.0.1:1" } }\nroutes: [{ path: /x, upstream: u, auth: none }]\n'
  t.match(policyProblems(`${base}listen: { port: 0, protocols: [h2] }\n`), [/h2 is HTTP\/2 over TLS and needs listen.tls/])
  const pki = testPki()
  const cert = pki.issue('gateway')
  t.match(policyProblems(`${base}listen: { port: 0, protocols: [http1, h2c], tls: { cert_file: ${cert.certFile}, key_file: ${cert.keyFile} } }\n`), [
    /h2c is HTTP\/2 in clear/,
  ])
  t.same(policyProblems(`${base}listen: { port: 0, protocols: [http1, h2c] }\n`), [])
})

t.test('an h2 upstream over TLS: verified with its own CA, ALPN h2; an unverified one is 502', async (t) => {
  const pki = testPki()
  const cert = pki.issue('upstream')
  const seen: Array<{ path: string; alpn: unknown }> = []
  const server = http2.createSecureServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    seen.push({ path: req.url, alpn: (req.socket as unknown as { alpnProtocol: unknown }).alpnProtocol })
    res.setHeader('content-type', 'text/plain')
    res.end(`over ${req.httpVersion}`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as AddressInfo).port
  const untrusted = pki.selfSigned('other')
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  secure: { url: "https://127.0.0.1:${port}", protocol: h2, tls: { ca_file: ${pki.ca.certFile} } }
  wrong_ca: { url: "https://localhost:${port}", protocol: h2, tls: { ca_file: ${untrusted.certFile} } }
routes:
  - { path: /secure/**, upstream: secure, auth: none }
  - { path: /wrong/**, upstream: wrong_ca, auth: none }
`,
  )
  const res = await get(`${gw.url}/secure/x`)
  t.equal(res.status, 200, 'an HTTP/1.1 client, an HTTP/2 upstream')
  t.equal(res.json, 'over 2.0')
  t.same(seen.at(-1), { path: '/secure/x', alpn: 'h2' })
  const wrong = await get(`${gw.url}/wrong/x`)
  t.equal(wrong.status, 502, 'a certificate the upstream CA does not sign')
  t.equal(wrong.json.error, 'upstream_unreachable')
  t.equal(seen.length, 1, 'nothing reached the upstream over an unverified connection')
})

t.test('shutdown: HTTP/2 clients get GOAWAY, and the request in flight finishes', async (t) => {
  const up = await upstream(t)
  up.delayMs = 600
  const idp = await issuer(t)
  const yaml = withProtocols(policy({ issuer: idp, upstream: up, routes: ROUTES }), '[h2c]').replace(
    'routes:',
    'shutdown: { drain_delay: 100ms, timeout: 5s }\nroutes:',
  )
  const gw = await gateway(t, yaml)
  const session = h2Session(t, gw.url)
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()))
  const inFlight = h2Request(session, { ':path': '/public/slow' })
  await eventually('the request reached the upstream', 5000, () => up.received.length > 0)
  const stopping = gw.shutdown()
  await goaway
  t.pass('GOAWAY received')
  const res = await inFlight
  t.equal(res.status, 200, 'the request in flight finished')
  await stopping
})

t.test('a stalled HTTP/2 upload to an HTTP/2 upstream is cut (408), and its upstream stream cancelled', async (t) => {
  let cancelled = 0
  let received = 0
  let ended = 0
  const server = http2.createServer()
  server.on('stream', (stream) => {
    stream.on('data', (c: Buffer) => {
      received += c.length
    })
    stream.on('close', () => {
      if (stream.rstCode === http2.constants.NGHTTP2_CANCEL) cancelled++
    })
    stream.on('end', () => {
      // node:http2 also ends the readable side of a stream reset by its peer: only a stream still
      // open at its end had a whole body.
      if (stream.destroyed || stream.closed) return
      ended++
      stream.respond({ ':status': 200 }, { endStream: true })
    })
  })
  const gw = await gatewayBefore(t, server, 'limits: { min_body_rate: 1000, body_rate_window: 300ms }', '/upload/**')
  const session = h2Session(t, gw.url)
  const started = Date.now()
  const status = await new Promise<number>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': '/upload/x', 'content-type': 'application/octet-stream' })
    stream.on('response', (h) => resolve(Number(h[':status'])))
    stream.on('error', reject)
    stream.write(Buffer.alloc(10))
    // ...and nothing more.
  })
  t.equal(status, 408, 'request_timeout')
  t.ok(Date.now() - started < 5000, 'within a few windows')
  await eventually('the upstream stream cancelled', 5000, () => cancelled === 1)
  t.equal(received, 10)
  t.equal(ended, 0, 'the upstream never took the cut-off body for a whole one (no END_STREAM before the reset)')
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  t.match(metrics, /jwtgate_client_timeouts_total\{kind="body_rate"\} 1/)
})

t.test('an HTTP/2 connection quiet for send_timeout gets GOAWAY, and a quiet stream on it goes on', async (t) => {
  let release: (() => void) | undefined
  const server = http2.createServer()
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200 })
    stream.write('first ')
    // Quiet for longer than the gateway's send_timeout, then the rest.
    release = () => stream.end('last')
  })
  const gw = await gatewayBefore(t, server, 'limits: { send_timeout: 300ms }', '/watch/**')
  const session = h2Session(t, gw.url)
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()))
  const answer = h2Request(session, { ':path': '/watch/x' })
  await goaway
  t.pass('GOAWAY after send_timeout of quiet')
  release?.()
  const res = await answer
  t.equal(res.body, 'first last', 'the stream in flight finished')
})

t.test('the access line counts the bytes of a body forwarded to an HTTP/2 upstream, and of its answer', async (t) => {
  const server = http2.createServer()
  server.on('stream', (stream) => {
    let received = 0
    stream.on('data', (c: Buffer) => {
      received += c.length
    })
    stream.on('end', () => {
      stream.respond({ ':status': 200 })
      stream.end(`got ${received}`)
    })
  })
  const gw = await gatewayBefore(t, server, '', '/upload/**')
  const session = h2Session(t, gw.url)
  const res = await h2Request(session, { ':method': 'POST', ':path': '/upload/x', 'content-type': 'application/octet-stream' }, Buffer.alloc(3000))
  t.equal(res.body, 'got 3000')
  await eventually('the access line', 5000, () => gw.logs.lines.some((l) => l.msg === 'request'))
  t.match(
    gw.logs.lines.find((l) => l.msg === 'request'),
    { status: 200, request_bytes: 3000, response_bytes: 'got 3000'.length },
  )
})

/** An h2c gateway (with `limits`) in front of `server`, an h2c upstream it starts, for one public route. */
async function gatewayBefore(t: Parameters<typeof gateway>[0], server: http2.Http2Server, limits: string, path: string) {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as AddressInfo).port
  return gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0, protocols: [h2c] }
admin: { host: 127.0.0.1, port: 0 }
${limits}
upstreams:
  h2: { url: "http://127.0.0.1:${port}", protocol: h2c, timeout: 10s }
routes:
  - { path: ${path}, upstream: h2, auth: none }
`,
  )
}
