// A compiled policy is immutable: frozen all the way down through its plain objects, with the
// per-route data the request path needs computed at load.
import t from 'tap'
import { createLogger } from '../../src/log.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { deepFreeze } from '../../src/policy/compiled.js'
import { parsePolicySource } from '../../src/policy/load.js'

const POLICY = `version: 1
listen: { port: 8080 }
issuers:
  internal: { issuer: internal, secret: "${'s'.repeat(32)}", audiences: [a], algorithms: [HS256], token_sources: [{ header: X-Token }, { cookie: session }] }
upstreams:
  app: { url: "http://127.0.0.1:1/base" }
identity_headers: { x-user: sub }
routes:
  - { path: /api/**, upstream: app, auth: { issuers: [internal] }, forward_token: false }
  - { path: /open/**, upstream: app, auth: none }
`

t.test('the policy, its routes and their parts are frozen', async (t) => {
  const policy = compilePolicy(parsePolicySource('policy.yaml', POLICY), createLogger('silent'))
  const route = policy.routes.match('GET', '', '/api/x')!.value
  for (const [name, value] of Object.entries({
    policy,
    route,
    identity: route.identity,
    headers: route.identity.headers,
    upstream: route.upstream,
    listen: policy.listen,
    auth: policy.auth,
    issuer: policy.issuers.get('internal')!,
    copy: route.headerCopy,
  })) {
    t.ok(Object.isFrozen(value), name)
  }
  t.throws(() => {
    ;(route.identity.headers as unknown[]).push({})
  }, TypeError)
  t.notOk(Object.isFrozen(policy.auth.tokens), 'the token cache keeps working')
})

t.test('what forwarding leaves out is computed with the route', async (t) => {
  const policy = compilePolicy(parsePolicySource('policy.yaml', POLICY), createLogger('silent'))
  const api = policy.routes.match('GET', '', '/api/x')!.value
  t.ok(api.headerCopy.skipped.has('x-token'), 'the token header, since the token is not forwarded')
  t.same(api.headerCopy.tokenCookies, ['session'], 'the token cookie is cut from Cookie')
  t.ok(api.headerCopy.skipped.has('proxy-connection'), 'hop-by-hop headers')
  const open = policy.routes.match('GET', '', '/open/x')!.value
  t.ok(open.headerCopy.skipped.has('authorization'), 'forward_token is false by default')
  t.equal(open.headerCopy.stripIdentityHeaders, policy.stripIdentityHeaders)
})

t.test('deepFreeze leaves class instances and getters alone', async (t) => {
  class Live {
    n = 0
  }
  let reads = 0
  const value = deepFreeze({
    live: new Live(),
    list: [{ a: 1 }],
    get counted() {
      return ++reads
    },
    map: new Map([['k', { b: 2 }]]),
  })
  value.live.n++
  t.equal(value.live.n, 1)
  t.ok(Object.isFrozen(value.list[0]))
  t.ok(Object.isFrozen(value.map.get('k')))
  t.equal(reads, 0, 'a getter is not called')
})
