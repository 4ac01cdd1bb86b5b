// gRPC-Web behind the gateway, with Connect's client (createGrpcWebTransport over HTTP/1.1, as a
// browser's) and Connect's server (connectNodeAdapter, gRPC-Web only) as the upstream, over
// HTTP/1.1 and over h2c (test/support/grpc_web.ts). The gateway does not translate gRPC-Web to
// gRPC: it passes the calls through as they are, and answers its own refusals in the form a
// gRPC-Web client reads (Trailers-Only: grpc-status and grpc-message in the HTTP head).
import t from 'tap'
import { Code, ConnectError } from '@connectrpc/connect'
import { gateway, issuer } from '../support/harness.js'
import { grpcWebClient, startGrpcWebUpstream } from '../support/grpc_web.js'

type Say = (req: { text: string }, options?: { headers?: Record<string, string>; onTrailer?: (trailers: Headers) => void }) => Promise<{ text: string }>
type Count = (req: { n: number }, options?: { headers?: Record<string, string> }) => AsyncIterable<{ text: string }>

t.test('gRPC-Web through the gateway with Connect on both sides', async (t) => {
  const idp = await issuer(t)
  const http1 = await startGrpcWebUpstream(t, 'http1')
  const h2c = await startGrpcWebUpstream(t, 'h2c')
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp:
    issuer: ${idp.url}
    jwks_uri: ${idp.jwksUri}
    audiences: [echo-api]
    algorithms: [RS256]
upstreams:
  web: { url: "${http1.url}", timeout: 2s }
  web-h2c: { url: "${h2c.url}", protocol: h2c, timeout: 2s }
identity_headers:
  x-user-id: sub
  x-user-roles: roles
routes:
  # gRPC-Web carries its status in the body: an HTTP/1.1 upstream serves it, so no grpc: true.
  - { path: /demo.Echo/Say, upstream: web, auth: { issuers: [idp] }, host: 127.0.0.1 }
  - { path: /demo.Echo/*, upstream: web, auth: { issuers: [idp], claims: { roles: { contains: streamer } } }, host: 127.0.0.1 }
  - { path: /demo.Echo/*, upstream: web-h2c, grpc: true, auth: { issuers: [idp] }, host: localhost }
`,
  )
  const port = gw.port
  const viaHttp1 = grpcWebClient(`http://127.0.0.1:${port}`) as unknown as { say: Say; count: Count }
  const viaH2c = grpcWebClient(`http://localhost:${port}`) as unknown as { say: Say; count: Count }
  const token = (claims: Record<string, unknown> = {}) => idp.sign({ sub: 'alice', aud: 'echo-api', roles: ['reader'], ...claims })
  const auth = (tok: string, extra: Record<string, string> = {}) => ({ headers: { authorization: `Bearer ${tok}`, ...extra } })
  const refusal = async (call: Promise<unknown>): Promise<ConnectError> => {
    try {
      await call
    } catch (err) {
      return ConnectError.from(err)
    }
    throw new Error('the call was not refused')
  }

  t.test('an allowed call reaches the upstream as gRPC-Web, with identity as metadata and spoofed identity stripped', async (t) => {
    let trailers: Headers | undefined
    const res = await viaHttp1.say({ text: 'hello' }, { ...auth(token(), { 'x-user-id': 'mallory' }), onTrailer: (h) => (trailers = h) })
    t.equal(res.text, 'hello')
    t.equal(trailers?.get('x-trailer'), 'from the upstream', "the upstream's trailers (in the gRPC-Web body) reach the client")
    const seen = http1.calls.at(-1)!
    t.equal(seen.method, 'Say')
    t.match(seen.headers['content-type'], /^application\/grpc-web\+proto/, 'passed through as gRPC-Web, not translated')
    t.equal(seen.headers['x-user-id'], 'alice', 'identity from the token')
    t.equal(seen.headers['x-user-roles'], 'reader')
    t.notOk(seen.headers.authorization, 'the token is not forwarded')
  })

  t.test('server streaming over gRPC-Web, through HTTP/1.1 both ways', async (t) => {
    const texts: string[] = []
    for await (const m of viaHttp1.count({ n: 3 }, auth(token({ roles: ['streamer'] })))) texts.push(m.text)
    t.same(texts, ['0', '1', '2'])
  })

  t.test('an HTTP/1.1 gRPC-Web client to an h2c upstream', async (t) => {
    const res = await viaH2c.say({ text: 'over h2c' }, auth(token()))
    t.equal(res.text, 'over h2c')
    t.equal(h2c.calls.at(-1)?.httpVersion, '2.0', 'the upstream was reached over HTTP/2')
    t.equal(h2c.calls.at(-1)?.headers['x-user-id'], 'alice')
  })

  t.test('refusals are gRPC statuses as the client library reports them, with the reason as the message', async (t) => {
    const before = http1.calls.length
    const missing = await refusal(viaHttp1.say({ text: 'x' }))
    t.equal(missing.code, Code.Unauthenticated)
    t.equal(missing.rawMessage, 'missing_token')
    t.equal(missing.metadata.get('www-authenticate'), 'Bearer realm="jwtgate"', 'the challenge in the metadata')
    const expired = await refusal(viaHttp1.say({ text: 'x' }, auth(idp.sign({ sub: 'alice', aud: 'echo-api' }, { expiresInSeconds: -60 }))))
    t.equal(expired.code, Code.Unauthenticated)
    t.equal(expired.rawMessage, 'expired')
    const denied = await refusal(
      (async () => {
        for await (const _ of viaHttp1.count({ n: 1 }, auth(token()))) break
      })(),
    )
    t.equal(denied.code, Code.PermissionDenied)
    t.equal(denied.rawMessage, 'insufficient_claims')
    t.match(String(denied.metadata.get('www-authenticate')), /insufficient_scope/)
    t.equal(http1.calls.length, before, 'none of them reached the upstream')
    const viaH2cMissing = await refusal(viaH2c.say({ text: 'x' }))
    t.equal(viaH2cMissing.code, Code.Unauthenticated, 'the same on the h2c route')
  })
})
