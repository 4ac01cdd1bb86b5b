// The one list of headers the gateway owns, as extraction, forwarding and the compiler read it.
import t from 'tap'
import {
  cannotCarryToken,
  canonicalHeaderName,
  HOP_BY_HOP_REQUEST,
  HOP_BY_HOP_RESPONSE,
  isOwnedHeader,
  ownedHeaderUnderPrefix,
  SET_BY_GATEWAY,
} from '../../src/http/owned_headers.js'

t.test('every header forwarding drops or sets is owned, so no claim can be written into it', async (t) => {
  for (const name of [...HOP_BY_HOP_REQUEST, ...HOP_BY_HOP_RESPONSE, ...SET_BY_GATEWAY]) t.ok(isOwnedHeader(name), name)
  for (const name of ['Proxy_Connection', 'HTTP2-Settings', 'x_forwarded_for', 'Forwarded', 'Cookie', 'X-Original-URL']) t.ok(isOwnedHeader(name), name)
  for (const name of ['x-user-id', 'x-jwt-sub', 'x-tenant']) t.notOk(isOwnedHeader(name), name)
})

t.test('a token may come in Authorization or Proxy-Authorization, never in what frames or steers the request', async (t) => {
  for (const name of ['Authorization', 'proxy-authorization', 'x-partner-token']) t.notOk(cannotCarryToken(name), name)
  for (const name of ['Cookie', 'Host', 'proxy-connection', 'http2-settings', 'x-request-id', 'forwarded']) t.ok(cannotCarryToken(name), name)
})

t.test('a prefix may not cover an owned header, but may cover the path and method overrides', async (t) => {
  t.equal(ownedHeaderUnderPrefix('auth'), 'authorization')
  t.equal(ownedHeaderUnderPrefix('X_Forwarded'), 'x-forwarded-for')
  t.equal(ownedHeaderUnderPrefix('http2'), 'http2-settings')
  t.equal(ownedHeaderUnderPrefix('x-jwt-'), undefined)
  t.equal(ownedHeaderUnderPrefix('x-original'), undefined)
  t.equal(canonicalHeaderName('X_User_Id'), 'x-user-id')
})
