// What forwarding does to headers (src/proxy/forward.ts), from explicit inputs: what the upstream
// receives of the client's headers, and what the client receives of the upstream's.
import t from 'tap'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { sourcePlace, tokenSources, type TokenSource, type TokenSources } from '../../src/auth/token_sources.js'
import type { TokenSourceDocument } from '../../src/policy/schema.js'
import { headerCopy, responseHeaders, upstreamRequestHeaders, withoutNominated, type HeaderCopy } from '../../src/proxy/forward.js'
import { compileHttpsRule } from '../../src/proxy/https_only.js'
import { headerStripper } from '../../src/proxy/identity_headers.js'

function sources(...specs: TokenSourceDocument[]): TokenSources {
  const fail = (_at: unknown, message: string) => {
    throw new Error(message)
  }
  return tokenSources(specs.map((spec) => ({ ...(sourcePlace(spec, [], fail) as Omit<TokenSource, 'issuers'>), issuers: undefined as never })))
}

const strip = headerStripper(['x-user-id'], ['x-jwt-'])
const plainHttp = compileHttpsRule(false, undefined, () => {})!
/** The client's request as the upstream's header building reads it: its peer, its Host, plain TCP. */
const raw = (peer = '192.0.2.7', host = 'gw.example') => ({ socket: { remoteAddress: peer }, headers: { host } }) as unknown as IncomingMessage

function forward(headers: IncomingHttpHeaders, copy: HeaderCopy, identity?: Record<string, string>, from = raw()): IncomingHttpHeaders {
  return upstreamRequestHeaders(headers, copy, identity, from, plainHttp, 'req-1')
}

const bearerRoute = headerCopy(sources({ header: 'Authorization' }), false, strip)

t.test('hop-by-hop request headers are never copied', async (t) => {
  const hop = {
    'keep-alive': 'timeout=5',
    upgrade: 'h2c',
    expect: '100-continue',
    'proxy-connection': 'keep-alive',
    te: 'trailers',
    trailer: 'x-sum',
    'proxy-authorization': 'Basic Zm9vOmJhcg==',
    'http2-settings': 'AAMAAABk',
    'transfer-encoding': 'chunked',
  }
  const out = forward({ ...hop, accept: 'text/plain' }, bearerRoute)
  for (const name of Object.keys(hop)) t.notOk(name in out, `${name} is not sent`)
  t.equal(out.accept, 'text/plain', 'end-to-end headers are')
})

t.test("x-request-id and X-Forwarded-* are the gateway's, whatever the client sent", async (t) => {
  const out = forward({ 'x-request-id': 'forged', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.test', host: 'gw.example' }, bearerRoute)
  t.equal(out['x-request-id'], 'req-1')
  t.equal(out['x-forwarded-proto'], 'http', "a client's X-Forwarded-Proto is not believed")
  t.equal(out['x-forwarded-host'], 'gw.example', 'the Host the request reached us with')
  t.equal(out['x-forwarded-for'], '192.0.2.7', 'the peer starts the chain')
  t.equal(forward({ 'x-forwarded-for': '203.0.113.1' }, bearerRoute)['x-forwarded-for'], '203.0.113.1, 192.0.2.7', 'the peer is appended')
  const noHost = forward({ 'x-forwarded-host': 'evil.test' }, bearerRoute, undefined, raw('192.0.2.7', ''))
  t.notOk('x-forwarded-host' in noHost, "without a Host, none: never the client's")
})

t.test("a trusted proxy's X-Forwarded-Proto is believed, an untrusted peer's not", async (t) => {
  const rule = compileHttpsRule(false, ['10.0.0.0/8'], () => {})!
  const viaProxy = { socket: { remoteAddress: '10.1.2.3' }, headers: { host: 'gw.example', 'x-forwarded-proto': 'https' } } as unknown as IncomingMessage
  t.equal(upstreamRequestHeaders({}, bearerRoute, undefined, viaProxy, rule, 'r')['x-forwarded-proto'], 'https')
  const direct = { socket: { remoteAddress: '192.0.2.7' }, headers: { host: 'gw.example', 'x-forwarded-proto': 'https' } } as unknown as IncomingMessage
  t.equal(upstreamRequestHeaders({}, bearerRoute, undefined, direct, rule, 'r')['x-forwarded-proto'], 'http')
})

t.test('identity headers come only from the decision: client copies are stripped, in any spelling', async (t) => {
  const client = { 'x-user-id': 'mallory', x_user_id: 'mallory', 'x-jwt-claims': 'forged', 'x-other': 'kept' }
  const anonymous = forward(client, bearerRoute)
  t.same(
    Object.keys(anonymous).filter((n) => n.startsWith('x-') && !n.startsWith('x-forwarded') && n !== 'x-request-id'),
    ['x-other'],
  )
  const alice = forward(client, bearerRoute, { 'x-user-id': 'alice' })
  t.equal(alice['x-user-id'], 'alice', "the verified value, not the client's")
  t.notOk('x_user_id' in alice)
})

t.test('forward_token: false leaves the token out: its headers and its cookies, not the other cookies', async (t) => {
  const route = headerCopy(sources({ header: 'Authorization' }, { header: 'X-Api-Token' }, { cookie: 'session' }), false, strip)
  const out = forward({ authorization: 'Bearer t', 'x-api-token': 't', cookie: 'theme=dark; session=t; lang=en' }, route)
  t.notOk('authorization' in out)
  t.notOk('x-api-token' in out)
  t.equal(out.cookie, 'theme=dark; lang=en')
  t.notOk('cookie' in forward({ cookie: 'session=t' }, route), 'no Cookie header when only the token cookie was in it')
})

t.test('forward_token: true passes the token on as sent', async (t) => {
  const route = headerCopy(sources({ header: 'Authorization' }, { cookie: 'session' }), true, strip)
  const out = forward({ authorization: 'Bearer t', cookie: 'session=t; theme=dark' }, route)
  t.equal(out.authorization, 'Bearer t')
  t.equal(out.cookie, 'session=t; theme=dark')
})

t.test('a route strips every token carrier it does not verify: Authorization on a cookie or header route', async (t) => {
  for (const forwardToken of [false, true]) {
    const cookieRoute = headerCopy(sources({ cookie: 'session' }), forwardToken, strip)
    const out = forward({ authorization: 'Bearer forged', cookie: 'session=t; theme=dark' }, cookieRoute)
    t.notOk('authorization' in out, `forward_token: ${forwardToken}: the unchecked Authorization is not sent`)
    t.equal(out.cookie, forwardToken ? 'session=t; theme=dark' : 'theme=dark')
    const headerRoute = headerCopy(sources({ header: 'X-Api-Token' }), forwardToken, strip)
    t.notOk(
      'authorization' in forward({ authorization: 'Bearer forged', 'x-api-token': 't' }, headerRoute),
      `X-Api-Token route, forward_token: ${forwardToken}`,
    )
  }
})

t.test('auth: none with forward_token: false drops Authorization, which was meant for the gateway', async (t) => {
  t.notOk('authorization' in forward({ authorization: 'Bearer t' }, headerCopy(undefined, false, strip)))
  t.equal(forward({ authorization: 'Bearer t' }, headerCopy(undefined, true, strip)).authorization, 'Bearer t')
})

t.test("an HTTP/2 upstream's pseudo-header fields are not sent back as headers", async (t) => {
  t.same(responseHeaders({ ':status': '200', 'content-type': 'application/grpc', 'grpc-encoding': 'identity' }), {
    'content-type': 'application/grpc',
    'grpc-encoding': 'identity',
  })
})

t.test('hop-by-hop response headers and the ones Connection nominates are not sent back', async (t) => {
  const out = responseHeaders({
    connection: 'x-internal, Keep-Alive',
    'x-internal': 'secret',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    upgrade: 'h2c',
    te: 'trailers',
    trailer: 'x-sum',
    'proxy-authenticate': 'Basic',
    'proxy-connection': 'close',
    'content-type': 'text/plain',
  })
  t.same(out, { 'content-type': 'text/plain' })
  t.same(responseHeaders({ connection: 'close', 'x-a': '1' }), { 'x-a': '1' }, 'Connection itself is never sent back')
})

t.test("Connection nominations are removed from the client's headers before anything is added", async (t) => {
  const nominated = withoutNominated({ connection: 'X-User-Id, authorization', 'x-user-id': 'mallory', authorization: 'Bearer t', accept: '*/*' })
  t.same(nominated, { accept: '*/*' })
  // So nominating an identity header cannot remove the one the gateway sets afterwards.
  t.equal(forward(nominated, bearerRoute, { 'x-user-id': 'alice' })['x-user-id'], 'alice')
})
