// Secrets are marked in the schema (`secret: true`, or 'url_credentials' for a URL that may carry
// a password), and GET /config redacts by that mark: a newly marked field is hidden with no other
// change.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { Ajv } from 'ajv'
import Type from 'typebox'
import { createLogger } from '../../src/log.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicySource } from '../../src/policy/load.js'
import { PolicySchema } from '../../src/policy/schema.js'
import { redactUrl } from '../../src/http/urls.js'
import { redactSecrets, secretPaths } from '../../src/policy/secrets.js'
import { secretKeyword } from '../../src/policy/json_schema.js'
import { eventually, gateway } from '../support/harness.js'

const HMAC_SECRET = 'hmac-secret-'.padEnd(40, 'h')
const ADMIN_TOKEN = 'admin-token-'.padEnd(24, 'a')
const STATUS_TOKEN = 'status-page-token-'.padEnd(28, 'p')
const REDIS_USER_PASSWORD = 'redis-userinfo-password'
const REDIS_QUERY_PASSWORD = 'redis-query-password'
const JWKS_PASSWORD = 'jwks-userinfo-p@ss'
const JWKS_API_KEY = 'jwks-api-key-value'
const NONCE_SECRET = 'dpop-nonce-secret-'.padEnd(40, 'n')

// Sets every field the schema marks secret (the first test checks that it does).
const EVERY_SECRET = `version: 1
listen: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9901, token: "\${A}" }
issuers:
  internal: { issuer: internal, secret: "\${S}", audiences: [a], algorithms: [HS256] }
  other: { issuer: other, secret: "\${S}2", audiences: [a], algorithms: [HS256] }
  keyed: { issuer: "https://idp.example", jwks_uri: "https://jwtgate:${JWKS_PASSWORD}@idp.example/keys?api_key=${JWKS_API_KEY}&v=2", audiences: [a], algorithms: [RS256] }
  rotating: { issuer: rotating, secrets: [{ kid: k2, secret: "\${S}3" }, { secret: "\${S}4" }], audiences: [a], algorithms: [HS256] }
upstreams: { orders: { url: "http://127.0.0.1:3001" } }
routes: [ { path: /x, upstream: orders, auth: { issuers: [internal] } } ]
revocation:
  backend: redis
  redis: { url: "rediss://jwtgate:${REDIS_USER_PASSWORD}@10.0.0.1:6380/2?password=${REDIS_QUERY_PASSWORD}&db=2" }
  admin_token: "\${T}"
dpop:
  nonce: { secret: "\${N}" }
`

/** The values at a marked path (`*` for any key or item) of a document. */
function valuesAt(doc: unknown, path: string[]): unknown[] {
  if (path.length === 0) return [doc]
  if (typeof doc !== 'object' || doc === null) return []
  const [head, ...rest] = path
  const children = head === '*' ? Object.values(doc) : head! in doc ? [(doc as Record<string, unknown>)[head!]] : []
  return children.flatMap((child) => valuesAt(child, rest))
}

t.test('every field the schema marks secret is redacted in /config', async (t) => {
  const source = parsePolicySource('policy.yaml', EVERY_SECRET, { S: HMAC_SECRET, T: ADMIN_TOKEN, A: STATUS_TOKEN, N: NONCE_SECRET })
  const policy = compilePolicy(source, createLogger('silent'))
  const shown = JSON.stringify(policy.redacted)
  for (const [path, mark] of secretPaths(PolicySchema)) {
    const values = valuesAt(policy.redacted, path.split('.'))
    t.ok(values.length > 0, `the test policy sets ${path}`)
    const urls: Record<string, string> = {
      'revocation.redis.url': 'rediss://[redacted]@10.0.0.1:6380/2?password=[redacted]&db=2',
      'issuers.*.jwks_uri': 'https://[redacted]@idp.example/keys?api_key=[redacted]&v=2',
      'upstreams.*.url': 'http://127.0.0.1:3001',
    }
    for (const value of values) {
      if (mark === true) t.equal(value, '[redacted]', path)
      else t.equal(value, urls[path], path)
    }
  }
  for (const secret of [NONCE_SECRET, HMAC_SECRET, ADMIN_TOKEN, STATUS_TOKEN, REDIS_USER_PASSWORD, REDIS_QUERY_PASSWORD, JWKS_PASSWORD, JWKS_API_KEY, 'p@ss']) {
    t.notOk(shown.includes(secret), secret)
  }
  t.equal(valuesAt(policy.redacted, ['issuers', 'internal', 'issuer'])[0], 'internal', 'the rest is shown as written')
  t.equal(source.document.issuers!.internal!.secret, HMAC_SECRET, 'the document the compilers read is untouched')
})

t.test('the marked fields are the secrets of the policy', async (t) => {
  t.same([...secretPaths(PolicySchema)].sort(), [
    ['admin.token', true],
    ['dpop.nonce.secret', true],
    ['issuers.*.jwks_uri', 'url_credentials'],
    ['issuers.*.secret', true],
    ['issuers.*.secrets.*.secret', true],
    ['revocation.admin_token', true],
    ['revocation.redis.url', 'url_credentials'],
    ['upstreams.*.url', 'url_credentials'],
  ])
})

t.test('marking a field is all it takes to redact it', async (t) => {
  const tiny = Type.Object({
    name: Type.String(),
    // Named like a secret, not marked: shown. The mark decides, never the name.
    secret: Type.Optional(Type.String()),
    api_key: Type.Optional(Type.String({ secret: true })),
    services: Type.Array(Type.Object({ url: Type.String({ secret: 'url_credentials' }), token: Type.Optional(Type.String({ secret: true })) })),
    extra: Type.Optional(Type.Union([Type.Literal(false), Type.Object({ password: Type.String({ secret: true }) })])),
    by_name: Type.Optional(Type.Unsafe({ type: 'object', additionalProperties: Type.String({ secret: true }) })),
  })
  const doc = {
    name: 'n',
    secret: 'shown',
    api_key: 'k',
    services: [{ url: 'redis://:p@h' }, { url: 'redis://h', token: 't' }],
    extra: { password: 'p' },
    by_name: { a: 'x', b: 'y' },
  }
  t.same(redactSecrets(tiny, doc), {
    name: 'n',
    secret: 'shown',
    api_key: '[redacted]',
    services: [{ url: 'redis://[redacted]@h' }, { url: 'redis://h', token: '[redacted]' }],
    extra: { password: '[redacted]' },
    by_name: { a: '[redacted]', b: '[redacted]' },
  })
  t.same(redactSecrets(tiny, { ...doc, extra: false }), { ...(redactSecrets(tiny, doc) as object), extra: false }, 'the other branch of a union')
  t.same([...secretPaths(tiny).keys()], ['api_key', 'services.*.url', 'services.*.token', 'extra.password', 'by_name.*'])
})

t.test('a URL keeps everything but its credentials', async (t) => {
  t.equal(redactUrl('redis://10.0.0.1:6379/0'), 'redis://10.0.0.1:6379/0')
  t.equal(redactUrl('redis://:pw@10.0.0.1:6379/0'), 'redis://[redacted]@10.0.0.1:6379/0')
  t.equal(redactUrl('rediss://user:pw@h/0'), 'rediss://[redacted]@h/0')
  t.equal(redactUrl('redis://h/0?password=pw&family=6'), 'redis://h/0?password=[redacted]&family=6')
  t.equal(redactUrl('redis://h/0?db=1&PassWord=pw#f'), 'redis://h/0?db=1&PassWord=[redacted]#f')
  t.equal(redactUrl('redis://h/0?pass%77ord=pw'), 'redis://h/0?pass%77ord=[redacted]', 'a name read after percent-decoding, as ioredis reads it')
  t.equal(redactUrl('redis://h/0?%zz=pw'), 'redis://h/0?%zz=[redacted]', 'a name that cannot be decoded')
  t.equal(redactUrl('redis://h/0?a@b=c'), 'redis://h/0?a@b=c', 'an @ after the host is not user info')
})

t.test('a password holding @, ? or # is hidden whole, however a client splits it', async (t) => {
  t.equal(redactUrl('redis://user:p@ss@h:6379/0'), 'redis://[redacted]@h:6379/0')
  t.equal(redactUrl('redis://:p@s?s#w@rd@h/0'), 'redis://[redacted]@h/0')
  t.equal(redactUrl('https://u:p@idp/jwks?x=a@b'), 'https://[redacted]@idp/jwks?x=a@b')
})

t.test('secret parameters: a deny-list by name, matched on the name without case, -, _ or . and by its end', async (t) => {
  const shown = redactUrl(
    'https://h/jwks?api_key=1&apikey=2&x-api-key=3&subscription-key=4&access_token=5&id_token=6&client_secret=7&X-Amz-Signature=8&sig=9&pwd=10&passwd=11&token=12&secret=13&code=14&tenant=t&v=2',
  )
  t.equal(
    shown,
    'https://h/jwks?api_key=[redacted]&apikey=[redacted]&x-api-key=[redacted]&subscription-key=[redacted]&access_token=[redacted]&id_token=[redacted]&client_secret=[redacted]&X-Amz-Signature=[redacted]&sig=[redacted]&pwd=[redacted]&passwd=[redacted]&token=[redacted]&secret=[redacted]&code=[redacted]&tenant=t&v=2',
  )
  t.equal(redactUrl('https://h/cb#access_token=a&state=s'), 'https://h/cb#access_token=[redacted]&state=s', 'the fragment too')
  t.equal(redactUrl('https://h/p?tenant=t', ['tenant']), 'https://h/p?tenant=[redacted]', 'and names the caller adds')
})

t.test('the loader accepts only known marks', async (t) => {
  const ajv = new Ajv({ strict: true, keywords: [secretKeyword] })
  t.doesNotThrow(() => ajv.compile({ type: 'string', secret: true }))
  t.doesNotThrow(() => ajv.compile({ type: 'string', secret: 'url_credentials' }))
  t.throws(() => ajv.compile({ type: 'string', secret: 'yes' }))
})

t.test('log.redact_url_parameters: URL parameters the policy marks are hidden in /config and in log lines', async (t) => {
  const closed = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo
      s.close(() => resolve(port))
    })
  })
  const SHARE = 'tenant-share-value-123'
  const policy = (marked: string) => `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: false
log: { redact_url_parameters: [${marked}] }
issuers:
  keyed: { issuer: "https://idp.example", jwks_uri: "http://127.0.0.1:${closed}/keys?Tenant-Share=${SHARE}&v=2", audiences: [a], algorithms: [RS256] }
upstreams: { up: { url: "http://127.0.0.1:9" } }
routes: [ { path: /x, upstream: up, auth: { issuers: [keyed] } } ]
`
  const shown = JSON.stringify(compilePolicy(parsePolicySource('p.yaml', policy('tenant_share'), {}), createLogger('silent')).redacted)
  t.match(shown, 'Tenant-Share=[redacted]&v=2', 'compared like the built-in names: case, - and _ ignored')
  t.notOk(shown.includes(SHARE))

  // The key fetch fails (nothing listens) and is logged with its URL.
  const gw = await gateway(t, policy('tenant_share'))
  await eventually('the failed key fetch is logged', 5000, () => gw.logs.text.includes('/keys?'))
  t.notOk(gw.logs.text.includes(SHARE), 'no log line shows the marked parameter')
  t.match(gw.logs.text, 'Tenant-Share=[redacted]')
})
