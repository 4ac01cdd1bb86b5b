// Tokens shaped like those real identity providers issue, each verified through a real gateway
// against a real key set: Google (two iss spellings), Microsoft Entra (multi-tenant iss, scp
// string, keys without alg), AWS Cognito (access tokens without aud), Auth0 (namespaced
// claims), Okta (scp array), and the key set shapes they publish.
import t from 'tap'
import { createPublicKey, randomUUID } from 'node:crypto'
import { generateDevKey, type DevIssuer } from '../../src/devkit/dev_issuer.js'
import type { EchoUpstream } from '../../src/devkit/echo_upstream.js'
import { bearer, gateway, get, issuer, upstream } from '../support/harness.js'

function idpPolicy(up: EchoUpstream, issuers: string, routes: string, identity = '  x-user-id: sub'): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
${issuers}
upstreams:
  orders: { url: "${up.url}", timeout: 2s }
identity_headers:
${identity}
routes:
${routes}
`
}

const now = () => Math.floor(Date.now() / 1000)

t.test('Google: both iss spellings it issues, nothing else', async (t) => {
  const google = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(
    t,
    idpPolicy(
      up,
      `
  google:
    issuer: https://accounts.google.com
    issuer_aliases: [accounts.google.com]
    jwks_uri: ${google.jwksUri}
    audiences: [1234567890-abc.apps.googleusercontent.com]
    algorithms: [RS256]`,
      `
  - path: /api/**
    upstream: orders
    auth: { issuers: [google] }`,
    ),
  )
  // An ID token as Google signs it.
  const idToken = (iss: string) =>
    google.sign({
      iss,
      azp: '1234567890-abc.apps.googleusercontent.com',
      aud: '1234567890-abc.apps.googleusercontent.com',
      sub: '110169484474386276334',
      email: 'alice@example.com',
      email_verified: true,
      hd: 'example.com',
      at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q',
      nonce: '0394852-3190485-2490358',
    })
  for (const iss of ['https://accounts.google.com', 'accounts.google.com']) {
    const res = await get(`${gw.url}/api/me`, bearer(idToken(iss)))
    t.equal(res.status, 200, iss)
    t.equal(up.received.at(-1)!.headers['x-user-id'], '110169484474386276334')
  }
  for (const iss of ['https://accounts.google.com/', 'http://accounts.google.com', 'ACCOUNTS.GOOGLE.COM', 'accounts.google.com.evil.example']) {
    const res = await get(`${gw.url}/api/me`, bearer(idToken(iss)))
    t.equal(res.status, 401, iss)
    t.equal(res.json.error, 'wrong_issuer')
  }
})

t.test('Microsoft Entra: a multi-tenant issuer, the tenant checked against tid and the allow-list', async (t) => {
  // Entra's key set names no alg on its keys, and carries x5t and x5c.
  const entra = await issuer(t, [{ alg: 'RS256', kid: 'nOo3ZDrODXEK1jKWhXslHR_KXEg', publishAlg: false }])
  entra.keys[0]!.publicJwk.x5t = 'nOo3ZDrODXEK1jKWhXslHR_KXEg'
  const up = await upstream(t)
  const ours = '72f988bf-86f1-41af-91ab-2d7cd011db47'
  const partner = '9188040d-6c67-4c5b-b112-36a304b66dad'
  const stranger = 'f8cdef31-a31e-4b4a-93e4-5f571e91255a'
  const gw = await gateway(
    t,
    idpPolicy(
      up,
      `
  entra:
    issuer: https://login.microsoftonline.com/{tid}/v2.0
    tenants: [${ours}, ${partner}]
    jwks_uri: ${entra.jwksUri}
    audiences: [api://orders]
    algorithms: [RS256]
  entra-any:
    issuer: https://sts.windows.net/{tid}/
    jwks_uri: ${entra.jwksUri}
    audiences: [api://orders]
    algorithms: [RS256]`,
      `
  - path: /any/**
    upstream: orders
    auth: { issuers: [entra-any] }
  - path: /api/**
    upstream: orders
    auth: { issuers: [entra], scopes: [Orders.Read] }`,
      '  x-user-id: oid\n  x-tenant: tid',
    ),
  )
  // An Entra v2.0 access token for an API: scp is a space-separated string.
  const accessToken = (tid: string, extra: Record<string, unknown> = {}) =>
    entra.sign({
      aud: 'api://orders',
      iss: `https://login.microsoftonline.com/${tid}/v2.0`,
      tid,
      ver: '2.0',
      oid: '00000000-0000-0000-66f3-3332eca7ea81',
      sub: 'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ',
      azp: '6e74172b-be56-4843-9ff4-e66a39bb12e3',
      scp: 'Orders.Read Profile.Read',
      name: 'Alice',
      preferred_username: 'alice@contoso.com',
      uti: 'fqiBqXLPj0eQa82S-IYFAA',
      ...extra,
    })

  for (const tid of [ours, partner]) {
    const res = await get(`${gw.url}/api/orders`, bearer(accessToken(tid)))
    t.equal(res.status, 200, `tenant ${tid}`)
    t.equal(up.received.at(-1)!.headers['x-tenant'], tid)
  }
  const before = up.received.length
  const stranger1 = await get(`${gw.url}/api/orders`, bearer(accessToken(stranger)))
  t.equal(stranger1.status, 401, 'a tenant outside the allow-list')
  t.same([stranger1.json.error, stranger1.json.message], ['wrong_issuer', 'the token tenant is not accepted here'])
  const mismatch = await get(`${gw.url}/api/orders`, bearer(accessToken(ours, { tid: stranger })))
  t.equal(mismatch.status, 401, 'a tid that is not the tenant of the iss')
  t.same([mismatch.json.error, mismatch.json.message], ['wrong_issuer', 'the token tid claim does not match its issuer'])
  t.equal((await get(`${gw.url}/api/orders`, bearer(accessToken(ours, { tid: undefined })))).status, 401, 'no tid at all')
  for (const iss of [
    `https://login.microsoftonline.com/${ours}/v2.0/`,
    `https://login.microsoftonline.com/${ours}/x/v2.0`,
    'https://login.microsoftonline.com//v2.0',
    'https://login.microsoftonline.com/{tid}/v2.0',
  ]) {
    const res = await get(`${gw.url}/api/orders`, bearer(accessToken(ours, { iss })))
    t.equal(res.status, 401, iss)
  }
  t.equal(up.received.length, before, 'none of them reached the upstream')
  const scoped = await get(`${gw.url}/api/orders`, bearer(accessToken(ours, { scp: 'Profile.Read' })))
  t.equal(scoped.status, 403, 'scp as a string: a scope it lacks')

  // Without tenants: any tenant of the IdP (validate warns about it), still bound to tid.
  const v1 = (tid: string, claimed = tid) => entra.sign({ aud: 'api://orders', iss: `https://sts.windows.net/${tid}/`, tid: claimed, oid: 'o', ver: '1.0' })
  t.equal((await get(`${gw.url}/any/x`, bearer(v1(stranger)))).status, 200, 'any tenant')
  t.equal((await get(`${gw.url}/any/x`, bearer(v1(stranger, ours)))).status, 401, 'but its own')
  t.ok(
    gw.logs.lines.some((l) => l.level === 40 && /issuers\.entra-any accepts tokens of every tenant/.test(String(l.msg))),
    'the gateway warns at load',
  )
})

t.test('AWS Cognito: access tokens carry client_id and no aud; audience_claim checks it', async (t) => {
  const cognito = await issuer(t, [{ alg: 'RS256', kid: 'abcdEXAMPLEkid=' }])
  const up = await upstream(t)
  const pool = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_aBcDeFgHi'
  const gw = await gateway(
    t,
    idpPolicy(
      up,
      `
  cognito:
    issuer: ${pool}
    audience_claim: client_id
    jwks_uri: ${cognito.jwksUri}
    audiences: [5r2q8o0tjk1p8u7ilbh3aunlbo]
    algorithms: [RS256]`,
      `
  - path: /api/**
    upstream: orders
    auth: { issuers: [cognito], scopes: [orders/read] }`,
    ),
  )
  const accessToken = (extra: Record<string, unknown>) =>
    cognito.sign({
      iss: pool,
      sub: 'aaaaaaaa-bbbb-cccc-dddd-example',
      client_id: '5r2q8o0tjk1p8u7ilbh3aunlbo',
      token_use: 'access',
      scope: 'orders/read orders/write',
      auth_time: now(),
      jti: randomUUID(),
      username: 'alice',
      'cognito:groups': ['admins'],
      ...extra,
    })
  t.equal((await get(`${gw.url}/api/x`, bearer(accessToken({})))).status, 200)
  const other = await get(`${gw.url}/api/x`, bearer(accessToken({ client_id: 'another-app-client' })))
  t.same([other.status, other.json.error], [401, 'wrong_audience'], 'another app client')
  // The ID token of the same pool has aud = client id and no client_id: not an access token.
  const idToken = await get(`${gw.url}/api/x`, bearer(accessToken({ client_id: undefined, aud: '5r2q8o0tjk1p8u7ilbh3aunlbo', token_use: 'id' })))
  t.same(
    [idToken.status, idToken.json.error, idToken.json.message],
    [401, 'wrong_audience', 'the token has no client_id claim'],
    'the audience check is never skipped',
  )
  const array = await get(`${gw.url}/api/x`, bearer(accessToken({ client_id: [7] })))
  t.same([array.status, array.json.error], [401, 'invalid_claims'])
})

t.test('Auth0: namespaced claims with dots and slashes, in conditions and identity headers', async (t) => {
  const auth0 = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(
    t,
    idpPolicy(
      up,
      `
  auth0:
    issuer: https://example.eu.auth0.com/
    jwks_uri: ${auth0.jwksUri}
    audiences: [https://orders.example.com]
    algorithms: [RS256]`,
      `
  - path: /admin/**
    upstream: orders
    auth:
      issuers: [auth0]
      claims:
        '"https://example.com/roles"': { contains: admin }
        '"https://example.com/app_metadata".plan': { equals: pro }`,
      `  x-user-id: sub\n  x-user-roles: '"https://example.com/roles"'\n  x-plan: '"https://example.com/app_metadata".plan'`,
    ),
  )
  const accessToken = (roles: string[], plan = 'pro') =>
    auth0.sign({
      iss: 'https://example.eu.auth0.com/',
      sub: 'auth0|5f7c8ec7c33c6c004bbafe82',
      aud: ['https://orders.example.com', 'https://example.eu.auth0.com/userinfo'],
      azp: 'm4kUGgWxl1XTh5kJpQ9S7k9kDzZ6R6Jx',
      scope: 'openid profile read:orders',
      gty: 'password',
      'https://example.com/roles': roles,
      'https://example.com/app_metadata': { plan },
    })
  t.equal((await get(`${gw.url}/admin/x`, bearer(accessToken(['admin', 'support'])))).status, 200)
  const seen = up.received.at(-1)!.headers
  t.same([seen['x-user-id'], seen['x-user-roles'], seen['x-plan']], ['auth0|5f7c8ec7c33c6c004bbafe82', 'admin,support', 'pro'])
  const denied = await get(`${gw.url}/admin/x`, bearer(accessToken(['support'])))
  t.same([denied.status, denied.json.message], [403, 'the token lacks the required claim "https://example.com/roles" (it must contain "admin")'])
  t.equal((await get(`${gw.url}/admin/x`, bearer(accessToken(['admin'], 'free')))).status, 403)
  // The unquoted path would look for nested objects "https://example" → "com/roles": no such claim.
  t.equal(
    (
      await get(
        `${gw.url}/admin/x`,
        bearer(
          auth0.sign({
            iss: 'https://example.eu.auth0.com/',
            aud: 'https://orders.example.com',
            https: { 'example.com/roles': ['admin'] },
            'https://example.com/app_metadata': { plan: 'pro' },
          }),
        ),
      )
    ).status,
    403,
  )
})

t.test('Okta: scp as an array', async (t) => {
  const okta = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(
    t,
    idpPolicy(
      up,
      `
  okta:
    issuer: https://dev-123456.okta.com/oauth2/default
    jwks_uri: ${okta.jwksUri}
    audiences: [api://default]
    algorithms: [RS256]`,
      `
  - path: /api/**
    upstream: orders
    auth: { issuers: [okta], scopes: [orders.read] }`,
    ),
  )
  const accessToken = (scp: string[]) =>
    okta.sign({
      ver: 1,
      jti: 'AT.wCxO4ZPcXb4iFYpsVf7Vl1Yt6ZV8i2f6-1s7iDl0qVE',
      iss: 'https://dev-123456.okta.com/oauth2/default',
      aud: 'api://default',
      cid: '0oa1b2c3d4EXAMPLE',
      uid: '00u1b2c3d4EXAMPLE',
      scp,
      sub: 'alice@example.com',
      groups: ['Everyone'],
    })
  t.equal((await get(`${gw.url}/api/x`, bearer(accessToken(['openid', 'orders.read'])))).status, 200)
  const denied = await get(`${gw.url}/api/x`, bearer(accessToken(['openid', 'orders.write'])))
  t.same(
    [denied.status, denied.headers.get('www-authenticate')],
    [403, 'Bearer realm="jwtgate", error="insufficient_scope", error_description="the token lacks a required scope", scope="orders.read"'],
  )
})

t.test('key sets as IdPs publish them', async (t) => {
  const up = await upstream(t)
  // One kid on an RSA and an EC key (as after a migration), a key without alg, RSA 4096,
  // ES384 on P-384, and encryption keys that would verify if they were used.
  const idp: DevIssuer = await issuer(t, [
    { alg: 'RS256', kid: 'shared' },
    { alg: 'ES256', kid: 'shared' },
    { alg: 'RS256', kid: 'no-alg', publishAlg: false },
    { alg: 'RS256', kid: 'big', modulusLength: 4096 },
    { alg: 'ES384', kid: 'p384' },
    { alg: 'RS256', kid: 'enc' },
    { alg: 'RS256', kid: 'ops' },
  ])
  const [rsa, ec, noAlg, big, p384, enc, ops] = idp.keys
  // Without alg, like Entra's keys: only `use` keeps it from verifying.
  enc!.publicJwk.use = 'enc'
  delete enc!.publicJwk.alg
  delete ops!.publicJwk.use
  ops!.publicJwk.key_ops = ['encrypt', 'wrapKey']
  const gw = await gateway(
    t,
    idpPolicy(
      up,
      `
  idp:
    issuer: ${idp.url}
    jwks_uri: ${idp.jwksUri}
    audiences: [orders-api]
    algorithms: [RS256, ES256, ES384]
    jwks: { cooldown: 1h }`,
      `
  - path: /api/**
    upstream: orders
    auth: { issuers: [idp] }`,
    ),
  )
  const claims = { sub: 'alice', aud: 'orders-api' }
  for (const key of [rsa, ec, noAlg, big, p384]) {
    const res = await get(`${gw.url}/api/x`, bearer(idp.sign(claims, { key })))
    t.equal(res.status, 200, `${key!.kid} ${key!.alg}`)
  }
  t.equal(createPublicKey({ key: big!.publicJwk as never, format: 'jwk' }).asymmetricKeyDetails?.modulusLength, 4096)
  for (const key of [enc, ops]) {
    const res = await get(`${gw.url}/api/x`, bearer(idp.sign(claims, { key })))
    t.same([res.status, res.json.error], [401, 'unknown_kid'], `a ${key!.kid} key never verifies`)
  }
  // The alg picks between the keys named "shared"; a kid of one type with the other's alg fails.
  const wrongType = await get(`${gw.url}/api/x`, bearer(idp.sign(claims, { key: { ...p384!, kid: 'no-alg' } })))
  t.equal(wrongType.status, 401, 'an ES384 token naming an RSA key')
  const forged = generateDevKey({ alg: 'ES256', kid: 'shared' })
  t.same((await get(`${gw.url}/api/x`, bearer(idp.sign(claims, { key: forged })))).json.error, 'bad_signature', 'another EC key under the shared kid')
})
