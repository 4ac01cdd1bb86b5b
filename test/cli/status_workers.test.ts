// The status page of `workers: 2`: one page for the whole gateway, served by the primary from
// every worker's part (figures added up, each worker's key cache and refusals), as /metrics is.
import t from 'tap'
import { servedCluster } from '../support/cli.js'
import { bearer, get, issuer, tempFile, upstream, fresh } from '../support/harness.js'

t.test('workers: 2, one page: figures added up, each worker listed', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile(
    'policy.yaml',
    `version: 1
workers: 2
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp: { issuer: "${idp.url}", jwks_uri: "${idp.jwksUri}", audiences: [orders-api], algorithms: [RS256] }
upstreams:
  orders: { url: "${up.url}" }
routes:
  - { name: api, path: /api/**, upstream: orders, auth: { issuers: [idp] } }
`,
  )
  const { url, admin } = await servedCluster(t, file)

  const token = idp.sign({ sub: 'a', aud: 'orders-api' })
  const answers: number[] = []
  for (let i = 0; i < 20; i++) answers.push((await fresh(`${url}/api/${i}`, i % 2 ? bearer(token) : {})).status)
  t.same(answers.filter((s) => s === 200).length, 10)

  const status = (await get(`${admin}/status.json`)).json
  t.same(
    status.overview.workers.map((w: any) => [w.worker, w.state, w.policy_hash]),
    [
      [1, 'listening', status.overview.policy.hash],
      [2, 'listening', status.overview.policy.hash],
    ],
  )
  t.not(status.overview.workers[0].pid, status.overview.workers[1].pid)
  t.match(status.routes[0], { name: 'api', since_start: { requests: 20, allowed: 10, denied: { missing_token: 10 } } }, 'both workers counted')
  t.equal(status.refusals.length, 10)
  const workersSeen = new Set(status.refusals.map((r: any) => r.worker))
  t.ok(
    [...workersSeen].every((w) => w === 1 || w === 2),
    'each refusal names its worker',
  )
  const issuer0 = status.issuers[0]
  t.match(issuer0, { name: 'idp', ready: true, tokens: { accepted: 10 } })
  t.same(
    issuer0.workers.map((w: any) => [w.worker, w.keys, w.last_fetch.result]),
    [
      [1, 1, 'ok'],
      [2, 1, 'ok'],
    ],
    'every worker fetches keys for itself',
  )
  const page = await (await fetch(`${admin}/`)).text()
  t.match(page, /<dt>Workers<\/dt><dd>2<\/dd>/)
  t.match(page, /Key caches of idp by worker/)
})
