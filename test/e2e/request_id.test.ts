// x-request-id on every answer: allowed, refused, unmatched, preflight and upstream failures, the
// same id the upstream and the access log got, so a client can quote it in a support request.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { rawError } from '../../src/http/respond.js'
import { fail } from '../../src/http/denial.js'
import { bearer, gateway, get, issuer } from '../support/harness.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

t.test('every answer of the proxy carries its request id', async (t) => {
  const idp = await issuer(t)
  // An upstream with an x-request-id of its own, which must not replace the gateway's.
  const seen: string[] = []
  const up = createServer((req, res) => {
    seen.push(String(req.headers['x-request-id']))
    res.setHeader('x-request-id', 'the-upstream-s-own')
    res.end('ok')
  })
  await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve))
  t.teardown(() => up.close())
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
issuers:
  idp: { issuer: ${idp.url}, jwks_uri: ${idp.jwksUri}, audiences: [orders-api], algorithms: [RS256] }
upstreams:
  orders: { url: "http://127.0.0.1:${(up.address() as AddressInfo).port}" }
  gone: { url: "http://127.0.0.1:1" }
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] }, cors: { origins: ["https://app.example.com"], methods: [GET] } }
  - { path: /gone/**, upstream: gone, auth: none }
`,
  )
  const token = bearer(idp.sign({ sub: 'alice', aud: 'orders-api' }))

  const allowed = await get(`${gw.url}/api/x`, token)
  t.equal(allowed.status, 200)
  t.match(allowed.headers.get('x-request-id'), UUID)
  t.equal(allowed.headers.get('x-request-id'), seen.at(-1), 'the id the upstream got, not its own')

  const answers = {
    denied: await get(`${gw.url}/api/x`),
    unmatched: await get(`${gw.url}/nothing`),
    preflight: await get(`${gw.url}/api/x`, { origin: 'https://app.example.com', 'access-control-request-method': 'GET' }, { method: 'OPTIONS' }),
    unreachable: await get(`${gw.url}/gone/x`),
  }
  t.same(
    Object.values(answers).map((a) => a.status),
    [401, 404, 204, 502],
  )
  for (const [what, answer] of Object.entries(answers)) {
    t.match(answer.headers.get('x-request-id'), UUID, what)
    if (answer.status !== 204) t.equal(answer.headers.get('x-request-id'), answer.json.request_id, `${what}: the id of the body`)
  }

  const mine = await get(`${gw.url}/api/x`, { ...token, 'x-request-id': 'trace-42' })
  t.equal(mine.headers.get('x-request-id'), 'trace-42', "a client's usable id is kept and sent back")
  const unusable = await get(`${gw.url}/api/x`, { ...token, 'x-request-id': 'x'.repeat(200) })
  t.match(unusable.headers.get('x-request-id'), UUID, 'an unusable one is replaced')
  t.equal(seen.at(-1), unusable.headers.get('x-request-id'))
})

t.test('an answer written on a bare socket carries it too', async (t) => {
  t.match(rawError(fail('request_timeout'), 'abc-1'), /\r\nx-request-id: abc-1\r\n/)
})
