// A gRPC service behind the gateway, end to end with @grpc/grpc-js as both the client and the
// upstream server (test/support/grpc.ts, test/fixtures/echo.proto): the four kinds of call,
// denials as the client library reports them, deadlines, cancellation both ways, a large
// message, identity as metadata, revocation, and a token that expires mid-stream.
import t from 'tap'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { bearer, eventually, gateway, issuer, policyProblems } from '../support/harness.js'
import { echoClient, grpc, say, startGrpcUpstream, withToken, type Message } from '../support/grpc.js'

const ADMIN_TOKEN = 'grpc-test-admin-token-0123456789'

/** A node:http2 upstream: /raw/hello answers with a body and a trailer; /raw.Echo/Chat resets the stream (CANCEL) at its first data. */
async function rawH2Upstream(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const server = http2.createServer()
  server.on('stream', (stream, headers) => {
    if (headers[':path'] === '/raw.Echo/Chat') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
      stream.once('data', () => stream.close(http2.constants.NGHTTP2_CANCEL))
      return
    }
    let body = ''
    stream.on('data', (c: Buffer) => {
      body += c
    })
    stream.on('end', () => {
      // A stream the gateway reset (a body over its limit) has nobody to answer.
      if (stream.destroyed || stream.closed) return
      stream.respond({ ':status': 200, 'x-raw': 'yes' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': String(body.length) }))
      stream.end(`hi:${body}`)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function grpcPolicy(opts: { issuerUrl: string; jwksUri: string; upstreamUrl: string; rawUrl: string; timeout?: string }): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0, protocols: [http1, h2c] }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp:
    issuer: ${opts.issuerUrl}
    jwks_uri: ${opts.jwksUri}
    audiences: [echo-api]
    algorithms: [RS256]
    clock_skew: 1s
upstreams:
  echo: { url: "${opts.upstreamUrl}", protocol: h2c, timeout: ${opts.timeout ?? '2s'} }
  down: { url: "http://127.0.0.1:1", protocol: h2c, timeout: 2s }
  raw: { url: "${opts.rawUrl}", protocol: h2c, timeout: 2s }
identity_headers:
  x-user-id: sub
  x-user-roles: roles
revocation: { backend: memory, admin_token: ${ADMIN_TOKEN} }
routes:
  - { path: /demo.Echo/Say, upstream: echo, grpc: true, auth: { issuers: [idp] } }
  - { path: /demo.Echo/*, upstream: echo, grpc: true, auth: { issuers: [idp], claims: { roles: { contains: streamer } } } }
  - { path: /down.Echo/*, upstream: down, grpc: true, auth: none }
  - { path: /raw.Echo/*, upstream: raw, grpc: true, auth: none }
  - { path: /raw/**, upstream: raw, auth: none }
  - { path: /small.Echo/*, upstream: raw, grpc: true, auth: none, max_body_bytes: 1000 }
`
}

t.test('gRPC through the gateway with grpc-js on both sides', async (t) => {
  const idp = await issuer(t)
  const up = await startGrpcUpstream(t)
  const raw = await rawH2Upstream(t)
  const gw = await gateway(t, grpcPolicy({ issuerUrl: idp.url, jwksUri: idp.jwksUri, upstreamUrl: up.url, rawUrl: raw }))
  const address = `127.0.0.1:${gw.port}`
  const client = echoClient(t, address)
  const token = (claims: Record<string, unknown> = {}, expiresInSeconds?: number) =>
    idp.sign({ sub: 'alice', aud: 'echo-api', roles: ['reader', 'streamer'], jti: `j-${Math.random()}`, ...claims }, { expiresInSeconds })

  t.test('unary: allowed, with identity as metadata and the upstream’s trailers', async (t) => {
    const { err, res, trailers } = await say(client, { text: 'hello' }, withToken(token(), { 'x-user-id': 'mallory', 'x-jwt-admin': 'yes' }))
    t.error(err)
    t.equal(res?.text, 'hello')
    const seen = up.calls.at(-1)!
    t.equal(seen.metadata['x-user-id'], 'alice', 'identity from the token, as metadata')
    t.equal(seen.metadata['x-user-roles'], 'reader,streamer')
    t.notOk(seen.metadata['x-jwt-admin'], 'the identity prefix is stripped')
    t.notOk(seen.metadata.authorization, 'the token is not forwarded (forward_token: false)')
    t.ok(seen.metadata['x-request-id'])
    t.notOk(
      Object.keys(seen.metadata).some((k) => k.endsWith('-bin')),
      'no binary metadata was made',
    )
    t.equal(trailers?.get('x-trailer')[0], 'from the upstream', 'a custom trailer reaches the client')
  })

  t.test('unary: refusals are gRPC statuses, with the reason code as the message and the challenge in the metadata', async (t) => {
    const before = up.calls.length
    const missing = await say(client, { text: 'x' }, withToken(undefined))
    t.equal(missing.err?.code, grpc.status.UNAUTHENTICATED)
    t.equal(missing.err?.details, 'missing_token')
    t.equal(missing.err?.metadata.get('www-authenticate')[0], 'Bearer realm="jwtgate"')
    const expired = await say(client, { text: 'x' }, withToken(token({}, -60)))
    t.equal(expired.err?.code, grpc.status.UNAUTHENTICATED)
    t.equal(expired.err?.details, 'expired')
    t.match(String(expired.err?.metadata.get('www-authenticate')[0]), /error="invalid_token"/)
    const reader = idp.sign({ sub: 'bob', aud: 'echo-api', roles: ['reader'] })
    const stream = client.Count({ n: 1, interval_ms: 0 }, withToken(reader))
    const denied = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve))
    t.equal(denied.code, grpc.status.PERMISSION_DENIED)
    t.equal(denied.details, 'insufficient_claims')
    t.match(String(denied.metadata.get('www-authenticate')[0]), /insufficient_scope/)
    // A method no route names.
    const other = new grpc.Client(address, grpc.credentials.createInsecure())
    t.teardown(() => other.close())
    const unrouted = await new Promise<grpc.ServiceError | null>((resolve) =>
      other.makeUnaryRequest(
        '/demo.Other/Nope',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        withToken(token()),
        (err) => resolve(err),
      ),
    )
    t.equal(unrouted?.code, grpc.status.UNIMPLEMENTED)
    t.equal(unrouted?.details, 'no_route')
    t.equal(up.calls.length, before, 'none of them reached the upstream')
  })

  t.test('the upstream’s own status and trailers pass through', async (t) => {
    const { err } = await say(client, { text: 'fail' }, withToken(token()))
    t.equal(err?.code, grpc.status.FAILED_PRECONDITION)
    t.equal(err?.details, 'told to fail')
    t.equal(err?.metadata.get('x-detail')[0], 'custom trailer')
  })

  t.test('refusals are counted and logged with their reason and HTTP status', async (t) => {
    await say(client, { text: 'x' }, withToken(undefined))
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    t.match(metrics, /jwtgate_auth_failures_total\{route="[^"]*",reason="missing_token"\} [1-9]/)
    const line = gw.logs.lines.findLast((l) => l.reason === 'missing_token')
    t.equal(line?.status, 401, 'the access line has the HTTP status of the reason')
  })

  t.test('server streaming', async (t) => {
    const got: string[] = []
    const stream = client.Count({ n: 5, interval_ms: 5 }, withToken(token()))
    stream.on('data', (m: Message) => got.push(m.text))
    await new Promise((resolve, reject) => {
      stream.on('end', resolve)
      stream.on('error', reject)
    })
    t.same(got, ['0', '1', '2', '3', '4'])
  })

  t.test('client streaming', async (t) => {
    const res = await new Promise<Message>((resolve, reject) => {
      const call = client.Collect(withToken(token()), {}, (err, m) => (err ? reject(err) : resolve(m)))
      for (const text of ['a', 'b', 'c']) call.write({ text })
      call.end()
    })
    t.equal(res.text, 'a,b,c')
  })

  t.test('bidirectional streaming, and a cancel from the client reaches the upstream', async (t) => {
    const call = client.Chat(withToken(token()))
    const got: string[] = []
    call.on('data', (m: Message) => got.push(m.text))
    call.on('error', () => {})
    for (const text of ['one', 'two', 'three']) call.write({ text })
    await eventually('three echoes', 5000, () => got.length === 3)
    t.same(got, ['echo:one', 'echo:two', 'echo:three'])
    const seen = up.calls.at(-1)!
    t.equal(seen.method, 'Chat')
    call.cancel()
    await eventually('the upstream saw the cancel', 5000, () => seen.cancelled)
    t.ok(seen.cancelled, 'RST_STREAM(CANCEL) passed on')
  })

  t.test('a cancel from the upstream (RST_STREAM CANCEL) reaches the client as one', async (t) => {
    const raw = echoClient(t, address)
    const call = raw.Chat(withToken(token()))
    // The same method, routed to an upstream that resets the stream once it has a message.
    const rawCall = new grpc.Client(address, grpc.credentials.createInsecure()).makeBidiStreamRequest(
      '/raw.Echo/Chat',
      (x: Buffer) => x,
      (x: Buffer) => x,
      new grpc.Metadata(),
    )
    call.cancel()
    call.on('error', () => {})
    const ended = new Promise<grpc.ServiceError>((resolve) => rawCall.on('error', resolve))
    rawCall.write(Buffer.from([0, 0, 0, 0, 0]))
    const err = await ended
    t.equal(err.code, grpc.status.CANCELLED, `the call ended: ${err.details}`)
  })

  t.test('deadlines: the call’s own, and the upstream timeout only without one', async (t) => {
    const cut = await say(client, { text: 'sleep:3000' }, withToken(token()), { deadline: Date.now() + 300 })
    t.equal(cut.err?.code, grpc.status.DEADLINE_EXCEEDED)
    const seen = up.calls.at(-1)!
    await eventually('the upstream call cancelled', 5000, () => seen.cancelled)
    // A deadline longer than the upstream timeout (2s) is the bound.
    const long = await say(client, { text: 'sleep:2500' }, withToken(token()), { deadline: Date.now() + 8000 })
    t.error(long.err, 'not cut by the shorter upstream timeout')
    t.equal(long.res?.text, 'sleep:2500')
    // Without a deadline, the upstream timeout applies, and says so.
    const timedOut = await say(client, { text: 'sleep:2500' }, withToken(token()))
    t.equal(timedOut.err?.code, grpc.status.DEADLINE_EXCEEDED)
    t.equal(timedOut.err?.details, 'upstream_timeout')
  })

  t.test('a large message both ways', async (t) => {
    const data = Buffer.alloc(3 * 1024 * 1024, 1)
    const { err, res } = await say(client, { text: 'large', data }, withToken(token()))
    t.error(err)
    t.equal(res?.data?.length, data.length)
  })

  t.test('a body over max_body_bytes: RESOURCE_EXHAUSTED for a call, 413 for plain HTTP/2, streamed or declared', async (t) => {
    const small = new grpc.Client(address, grpc.credentials.createInsecure())
    t.teardown(() => small.close())
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      small.makeUnaryRequest(
        '/small.Echo/Say',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(5000, 1),
        new grpc.Metadata(),
        (e) => resolve(e),
      ),
    )
    t.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED)
    t.equal(err?.details, 'body_too_large')
    const session = http2.connect(gw.url)
    t.teardown(() => session.destroy())
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': '/small.Echo/plain' })
      stream.on('response', (h) => resolve(Number(h[':status'])))
      stream.on('error', reject)
      // No content-length: counted as it streams.
      stream.write(Buffer.alloc(600))
      setTimeout(() => stream.write(Buffer.alloc(600)), 50)
    })
    t.equal(status, 413, `status ${status}`)
  })

  t.test('an unreachable upstream is UNAVAILABLE', async (t) => {
    const down = new grpc.Client(address, grpc.credentials.createInsecure())
    t.teardown(() => down.close())
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      down.makeUnaryRequest(
        '/down.Echo/Say',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        new grpc.Metadata(),
        (e) => resolve(e),
      ),
    )
    t.equal(err?.code, grpc.status.UNAVAILABLE)
    t.equal(err?.details, 'upstream_unreachable')
  })

  t.test('a revoked token: refused, and an open stream is ended with UNAUTHENTICATED', async (t) => {
    const jti = `revoke-me-${Date.now()}`
    const revocable = idp.sign({ sub: 'carol', aud: 'echo-api', roles: ['streamer'], jti })
    const stream = client.Count({ n: 1000, interval_ms: 20 }, withToken(revocable))
    let count = 0
    stream.on('data', () => count++)
    const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve))
    await eventually('the stream flows', 5000, () => count > 2)
    const revoke = await fetch(`${gw.adminUrl}/revocations`, {
      method: 'POST',
      headers: { ...bearer(ADMIN_TOKEN), 'content-type': 'application/json' },
      body: JSON.stringify({ jti, iss: idp.url }),
    })
    t.equal(revoke.status, 201)
    const err = await ended
    t.equal(err.code, grpc.status.UNAUTHENTICATED)
    t.equal(err.details, 'revoked')
    const seen = up.calls.at(-1)!
    await eventually('the upstream stream cancelled', 5000, () => seen.cancelled)
    const again = await say(client, { text: 'x' }, withToken(revocable))
    t.equal(again.err?.code, grpc.status.UNAUTHENTICATED)
    t.equal(again.err?.details, 'revoked')
  })

  t.test('a token that expires mid-stream ends the stream with UNAUTHENTICATED', async (t) => {
    // exp in 1 s, plus the issuer's 1 s skew.
    const short = token({}, 1)
    const started = Date.now()
    const stream = client.Count({ n: 10_000, interval_ms: 50 }, withToken(short))
    let count = 0
    stream.on('data', () => count++)
    const err = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve))
    t.equal(err.code, grpc.status.UNAUTHENTICATED)
    t.equal(err.details, 'expired')
    t.ok(count > 0, `messages flowed before (${count})`)
    t.ok(Date.now() - started >= 900, 'not before the token ended')
    const seen = up.calls.at(-1)!
    await eventually('the upstream stream cancelled', 5000, () => seen.cancelled)
  })

  t.test('an HTTP/1.1 client reaches an HTTP/2 upstream; a JSON refusal for a plain HTTP client', async (t) => {
    const res = await fetch(`${gw.url}/raw/hello`, { method: 'POST', body: 'ping' })
    t.equal(res.status, 200)
    t.equal(await res.text(), 'hi:ping')
    t.equal(res.headers.get('x-raw'), 'yes')
    const down = await fetch(`${gw.url}/down.Echo/x`)
    t.equal(down.status, 502)
    t.equal(((await down.json()) as { error: string }).error, 'upstream_unreachable')
  })
})

t.test('an identity header named like gRPC binary metadata (-bin) is refused at load', async (t) => {
  const base = 'version: 1\nlisten: { port: 0 }\nupstreams: { u: { url: "http://127.0.0.1:1" } }\nroutes: [{ path: /x, upstream: u, auth: none }]\n'
  t.match(policyProblems(`${base}identity_headers: { x-groups-bin: groups }\n`), [/x-groups-bin ends in -bin, which gRPC reads as base64 binary metadata/])
  t.match(policyProblems(`${base}forward_payload_header: x-claims-bin\n`), [/x-claims-bin ends in -bin/])
})

t.test('a gRPC route to an upstream that cannot carry HTTP/2 is a policy error at load', async (t) => {
  const problems = policyProblems(`version: 1
listen: { port: 0, protocols: [h2c] }
upstreams:
  legacy: { url: "http://127.0.0.1:1" }
routes:
  - { path: /demo.Echo/*, upstream: legacy, grpc: true, auth: none }
`)
  t.match(problems, [/^6:\d+ grpc: true needs an upstream that speaks HTTP\/2: upstreams.legacy has protocol http1/])
  t.match(
    policyProblems(`version: 1
listen: { port: 0 }
upstreams:
  a: { url: "https://127.0.0.1:1", protocol: h2c }
routes: [{ path: /x, upstream: a, auth: none }]
`),
    [/protocol h2c needs an http:\/\/ url/],
  )
})
