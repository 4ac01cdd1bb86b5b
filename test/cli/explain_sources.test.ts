// `jwtgate explain` on routes that read tokens elsewhere than Authorization: Bearer, and on
// issuers whose iss or audience live elsewhere than iss and aud.
import t from 'tap'
import { formatWarning, validatePolicy } from '../../src/cli/validate.js'
import { explainHere } from '../support/cli.js'
import { issuer, tempFile, upstream } from '../support/harness.js'

t.test('explain with token sources, tenants and audience claims', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile(
    'policy.yaml',
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
issuers:
  idp:
    issuer: ${idp.url}
    jwks_uri: ${idp.jwksUri}
    audiences: [orders-api]
    algorithms: [RS256]
    token_sources: [{ cookie: session }]
  entra:
    issuer: https://login.microsoftonline.com/{tid}/v2.0
    tenants: [t-1, t-2]
    audience_claim: azp
    jwks_uri: ${idp.jwksUri}
    audiences: [orders-client]
    algorithms: [RS256]
  entra-v1:
    issuer: https://sts.windows.net/{tid}/
    jwks_uri: ${idp.jwksUri}
    audiences: [orders-client]
    algorithms: [RS256]
upstreams:
  orders: { url: "${up.url}" }
identity_headers:
  x-user-id: sub
  x-tenant: tid
routes:
  - path: /link/**
    upstream: orders
    forward_token: false
    token_sources: [{ query: access_token }]
    auth: { issuers: [idp] }
  - path: /tenant/**
    upstream: orders
    auth: { issuers: [entra] }
  - path: /**
    upstream: orders
    auth: { issuers: [idp] }
`,
  )
  const token = idp.sign({ sub: 'alice', aud: 'orders-api' })

  t.test('validate warns about an issuer open to every tenant, at its issuer line', async (t) => {
    const warnings = validatePolicy(file).warnings.map(formatWarning).join('\n')
    t.match(
      warnings,
      `${file}:18:13 warning: issuers.entra-v1 accepts tokens of every tenant of https://sts.windows.net/{tid}/; list tenants: to accept only yours`,
    )
    t.notMatch(warnings, /issuers\.entra accepts/, 'not when tenants are listed')
  })

  t.test('--token goes where the route reads it: a cookie', async (t) => {
    const res = await explainHere(['-c', file, 'GET', '/api/x', '--token', token])
    t.equal(res.code, 0, res.stdout)
    t.match(res.stdout, /^ +read from the session cookie$/m)
    t.match(res.stdout, /^decision  ALLOW \(token from idp\)/m)
    t.match(res.stdout, /^ +session cookie removed$/m)
  })

  t.test('--token in a query parameter: the upstream URL shown without it', async (t) => {
    const res = await explainHere(['-c', file, 'GET', `/link/x?a=1&access_token=${token}`, '--json'])
    t.equal(res.code, 0, res.stdout)
    const e = JSON.parse(res.stdout)
    t.equal(e.upstream.url, `${up.url}/link/x?a=1`)
    t.same(e.requires.token_sources, [{ from: 'access_token query parameter', forwarded: false }])
    t.equal(e.decision, 'allow', 'the token in the target is the one checked')
  })

  t.test('--claims on a multi-tenant issuer: iss from the tid (or the first tenant), the audience in its claim', async (t) => {
    const res = await explainHere(['-c', file, 'GET', '/tenant/x', '--claims', '{"sub":"bob","tid":"t-2"}', '--json'])
    t.equal(res.code, 0, res.stdout)
    const e = JSON.parse(res.stdout)
    t.same(e.claims, { sub: 'bob', tid: 't-2', iss: 'https://login.microsoftonline.com/t-2/v2.0', azp: 'orders-client' })
    t.same(e.requires.issuers, [
      { name: 'entra', iss: 'https://login.microsoftonline.com/{tid}/v2.0', audiences: ['orders-client'], tenants: ['t-1', 't-2'], audience_claim: 'azp' },
    ])
    t.same(e.identity_headers, { 'x-user-id': 'bob', 'x-tenant': 't-2' })
    const text = await explainHere(['-c', file, 'GET', '/tenant/x', '--claims', '{"sub":"bob","tid":"t-3"}'])
    t.equal(text.code, 1)
    t.match(text.stdout, /a valid token from entra \(iss https:\/\/login\.microsoftonline\.com\/\{tid\}\/v2\.0, tenants t-1, t-2, azp orders-client\)/)
    t.match(text.stdout, /DENY 401 wrong_issuer: the token tenant is not accepted here/)
  })
})
