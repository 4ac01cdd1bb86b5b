// An upstream's `health:` check decides /readyz with the keys: a real app on 127.0.0.1 that
// starts unhealthy, turns healthy, fails, recovers; a reload keeps an unchanged check's state.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { testPki } from '../support/certs.js'
import { eventually, gateway, get, policyProblems, sleep } from '../support/harness.js'

/** The app: answers its health path with `status`, counts the checks, can hang. */
async function app(t: {
  teardown(fn: () => unknown): void
}): Promise<{ url: string; status: number; hang: boolean; checks: number; headers: IncomingHttpHeaders; server: Server }> {
  const state = {
    url: '',
    status: 503,
    hang: false,
    checks: 0,
    headers: {} as IncomingHttpHeaders,
    server: createServer((req, res) => {
      if (req.url === '/healthz' || req.url === '/ready?deep=1') {
        state.checks++
        state.headers = req.headers
        if (state.hang) return
        res.statusCode = state.status
        return res.end()
      }
      res.end('app')
    }),
  }
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve))
  state.server.unref()
  t.teardown(() => {
    state.server.closeAllConnections()
    state.server.close()
  })
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`
  return state
}

function yaml(url: string, health: string, otherPort = 9): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drain_delay: 0s, timeout: 1s }
upstreams:
  app: { url: "${url}", health: ${health} }
  other: { url: "http://127.0.0.1:${otherPort}" }
routes:
  - { path: /other/**, upstream: other, auth: none }
  - { path: /**, upstream: app, auth: none }
`
}

const HEALTH = '{ path: /healthz, interval: 100ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 2 }'

async function ready(adminUrl: string): Promise<{ status: number; reasons: string[] }> {
  const r = await get(`${adminUrl}/readyz`)
  return { status: r.status, reasons: (r.json as { reasons?: string[] }).reasons ?? [] }
}

async function healthyGauge(adminUrl: string): Promise<string | undefined> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  return /^jwtgate_upstream_healthy\{upstream="app"\} (\d)$/m.exec(text)?.[1]
}

t.test('/readyz waits for the app, follows it down and up, and the gauge with it', async (t) => {
  const upstream = await app(t)
  const g = await gateway(t, yaml(upstream.url, HEALTH))
  const first = await ready(g.adminUrl!)
  t.equal(first.status, 503, 'not ready while the app answers 503')
  t.match(first.reasons.join('\n'), /upstream app: (unhealthy \(GET \/healthz: status 503\)|not checked yet)/)
  t.notMatch(first.reasons.join('\n'), /other/, 'an upstream without health: is not checked')
  await eventually('the gauge says 0', 10_000, async () => (await healthyGauge(g.adminUrl!)) === '0')

  upstream.status = 200
  await eventually('ready once the app answers 200 twice', 10_000, async () => (await ready(g.adminUrl!)).status === 200)
  t.equal(await healthyGauge(g.adminUrl!), '1')

  upstream.status = 500
  await eventually('not ready after two failed checks', 10_000, async () => (await ready(g.adminUrl!)).status === 503)
  t.match((await ready(g.adminUrl!)).reasons, [/^upstream app: unhealthy \(GET \/healthz: status 500\)$/])
  t.equal(await healthyGauge(g.adminUrl!), '0')
  t.ok(
    g.logs.lines.some((l) => l.msg === 'upstream unhealthy' && l.upstream === 'app'),
    'the change is logged',
  )

  upstream.hang = true
  upstream.status = 200
  // Still unhealthy (it answered 500 last), now for want of an answer within the 1 s timeout.
  await eventually('an app that never answers fails by the timeout', 10_000, async () =>
    /no answer within 1000ms/.test((await ready(g.adminUrl!)).reasons.join()),
  )
  upstream.hang = false
  await eventually('ready again', 10_000, async () => (await ready(g.adminUrl!)).status === 200)

  t.equal(upstream.headers['user-agent'], 'jwtgate-health-check', 'the check says what it is')
  t.notOk(upstream.headers.authorization ?? upstream.headers.cookie ?? upstream.headers['x-request-id'], 'and carries nothing of any client')

  // Traffic is not refused by the check: readiness is for the endpoints controller.
  t.equal((await fetch(`${g.url}/x`)).status, 200)
})

t.test('a reload keeps the state of an unchanged check and starts a changed one afresh', async (t) => {
  const upstream = await app(t)
  upstream.status = 200
  const g = await gateway(t, yaml(upstream.url, HEALTH))
  await eventually('ready', 10_000, async () => (await ready(g.adminUrl!)).status === 200)

  writeFileSync(g.gateway.policy.file, yaml(upstream.url, HEALTH, 10))
  t.ok(await g.reload(), 'reloaded with another upstream changed')
  t.same(g.readiness().reasons, [], 'still ready at once: the check and its state were kept')

  writeFileSync(g.gateway.policy.file, yaml(upstream.url, '{ path: "/ready?deep=1", interval: 100ms }'))
  t.ok(await g.reload(), 'reloaded with another path')
  t.match(g.readiness().reasons, [/^upstream app: not checked yet \(GET \/ready\?deep=1\)$/], 'a changed check starts unknown')
  await eventually('ready by the new check', 10_000, () => g.readiness().reasons.length === 0)

  writeFileSync(g.gateway.policy.file, yaml(upstream.url, '{ path: /healthz }').replace(', health: { path: /healthz }', ''))
  t.ok(await g.reload(), 'reloaded without health:')
  t.same(g.readiness().reasons, [], 'no check, nothing to wait for')
  t.equal(await healthyGauge(g.adminUrl!), undefined, 'and no series')
})

t.test('shutdown stops the checks', async (t) => {
  const upstream = await app(t)
  upstream.status = 200
  const g = await gateway(t, yaml(upstream.url, '{ path: /healthz, interval: 100ms }'))
  await eventually('checked a few times', 10_000, () => upstream.checks >= 3)
  await g.close()
  const after = upstream.checks
  await sleep(400)
  t.equal(upstream.checks, after, 'no check after the shutdown')
})

t.test('health: settings are checked at load', async (t) => {
  const with_ = (health: string) => policyProblems(yaml('http://127.0.0.1:3000', health))
  t.same(with_('{ path: /healthz }'), [])
  t.match(with_('{ path: healthz }').join('\n'), /upstreams\.app\.health\.path/)
  t.match(with_('{ path: /healthz, interval: 10ms }').join('\n'), /health\.interval must be at least 100ms/)
  t.match(with_('{ path: /healthz, timeout: 0s }').join('\n'), /health\.timeout must be more than 0/)
  t.match(with_('{ path: /healthz, unhealthy_threshold: 0 }').join('\n'), /unhealthy_threshold/)
  t.match(with_('{ path: /healthz, intervall: 5s }').join('\n'), /intervall/)
})

t.test('an https upstream is checked with its own CA, and an unverified certificate fails the check', async (t) => {
  const pki = testPki()
  const leaf = pki.issue('app')
  const server = createHttpsServer({ cert: leaf.cert, key: leaf.key }, (_req, res) => res.end())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const url = `https://localhost:${(server.address() as AddressInfo).port}`
  const trusted = await gateway(
    t,
    yaml(url, '{ path: /healthz, interval: 100ms }').replace(`url: "${url}"`, `url: "${url}", tls: { ca_file: "${pki.ca.certFile}" }`),
  )
  await eventually('healthy with the CA', 10_000, () => trusted.readiness().reasons.length === 0)
  const untrusted = await gateway(t, yaml(url, '{ path: /healthz, interval: 100ms }'))
  await eventually('unhealthy without it', 10_000, () => /unhealthy/.test(untrusted.readiness().reasons.join()))
  t.match(untrusted.readiness().reasons, [
    /^upstream app: unhealthy \(GET \/healthz: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN)\)$/,
  ])
})
