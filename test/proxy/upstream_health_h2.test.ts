// An upstream's `health:` check over HTTP/2: an h2c or h2 upstream (a server that does not speak
// HTTP/1.1) is probed over HTTP/2, with the upstream's TLS settings for h2; `grpc: true` calls the
// standard gRPC health service (grpc.health.v1.Health/Check) of a real grpc-js server, whose
// health service is grpc-health-check (the gRPC project's own).
import t from 'tap'
import http2, { type IncomingHttpHeaders } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { HealthImplementation } from 'grpc-health-check'
import { testPki } from '../support/certs.js'
import { grpc } from '../support/grpc.js'
import { eventually, gateway, policyProblems } from '../support/harness.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** An HTTP/2-only app (node:http2: no HTTP/1.1): answers /healthz with `status`, records each check. */
async function h2App(t: Teardown, tls?: { cert: Buffer; key: Buffer }) {
  const state = { url: '', status: 503, checks: [] as Array<{ version: string; headers: IncomingHttpHeaders }> }
  const onRequest = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    if (req.url === '/healthz') state.checks.push({ version: req.httpVersion, headers: req.headers })
    res.statusCode = req.url === '/healthz' ? state.status : 200
    res.end()
  }
  const server = tls ? http2.createSecureServer({ ...tls, allowHTTP1: false }, onRequest) : http2.createServer(onRequest)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as AddressInfo).port
  state.url = tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`
  return state
}

/** A grpc-js server on h2c; with `health`, the standard health service answering from it. */
async function grpcServer(t: Teardown, health?: HealthImplementation): Promise<string> {
  const server = new grpc.Server()
  health?.addToServer(server)
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  )
  t.teardown(() => server.forceShutdown())
  return `http://127.0.0.1:${port}`
}

function yaml(url: string, health: string, extra = 'protocol: h2c'): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drain_delay: 0s, timeout: 1s }
upstreams:
  app: { url: "${url}", ${extra}, health: ${health} }
routes:
  - { path: /**, upstream: app, auth: none }
`
}

type Gateway = Awaited<ReturnType<typeof gateway>>
const reasons = (g: Gateway) => g.readiness().reasons.join('\n')

t.test('an h2c upstream is checked over HTTP/2 with prior knowledge', async (t) => {
  const app = await h2App(t)
  const g = await gateway(t, yaml(app.url, '{ path: /healthz, interval: 100ms }'))
  await eventually('unhealthy while the app answers 503', 10_000, () => /unhealthy \(GET \/healthz: status 503\)/.test(reasons(g)))
  app.status = 200
  await eventually('ready once it answers 200', 10_000, () => g.readiness().reasons.length === 0)
  const check = app.checks.at(-1)!
  t.equal(check.version, '2.0', 'the check spoke HTTP/2')
  t.equal(check.headers['user-agent'], 'jwtgate-health-check')
  t.notOk(check.headers.authorization ?? check.headers['x-request-id'], 'and carries nothing of any client')
  const status = (await (await fetch(`${g.adminUrl}/status.json`)).json()) as { upstreams: Array<{ health: { check: string; state: string } }> }
  t.match(status.upstreams[0]!.health, { state: 'healthy', check: 'GET /healthz' })
})

t.test('an h2 upstream is checked over TLS (ALPN h2) with its own CA; an unverified certificate fails the check', async (t) => {
  const pki = testPki()
  const leaf = pki.issue('app')
  const app = await h2App(t, { cert: leaf.cert, key: leaf.key })
  app.status = 204
  const trusted = await gateway(t, yaml(app.url, '{ path: /healthz, interval: 100ms }', `protocol: h2, tls: { ca_file: "${pki.ca.certFile}" }`))
  await eventually('healthy with the CA', 10_000, () => trusted.readiness().reasons.length === 0)
  t.equal(app.checks.at(-1)!.version, '2.0')
  const untrusted = await gateway(t, yaml(app.url, '{ path: /healthz, interval: 100ms }', 'protocol: h2'))
  await eventually('unhealthy without it', 10_000, () => /unhealthy/.test(reasons(untrusted)))
  t.match(untrusted.readiness().reasons, [
    /^upstream app: unhealthy \(GET \/healthz: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN)\)$/,
  ])
})

t.test('grpc: true calls grpc.health.v1.Health/Check on a grpc-js server and follows its status', async (t) => {
  const health = new HealthImplementation({ '': 'SERVING', 'demo.Echo': 'NOT_SERVING' })
  const url = await grpcServer(t, health)

  const whole = await gateway(t, yaml(url, '{ grpc: true, interval: 100ms }'))
  await eventually('the whole server SERVING: ready', 10_000, () => whole.readiness().reasons.length === 0)

  const one = await gateway(t, yaml(url, '{ grpc: true, service: demo.Echo, interval: 100ms }'))
  await eventually('demo.Echo NOT_SERVING: unhealthy', 10_000, () => /unhealthy/.test(reasons(one)))
  t.match(one.readiness().reasons, [/^upstream app: unhealthy \(gRPC health check \(demo\.Echo\): NOT_SERVING\)$/])
  health.setStatus('demo.Echo', 'SERVING')
  await eventually('SERVING: ready', 10_000, () => one.readiness().reasons.length === 0)
  health.setStatus('demo.Echo', 'NOT_SERVING')
  await eventually('NOT_SERVING again: unhealthy after 3 checks', 10_000, () => /NOT_SERVING/.test(reasons(one)))

  const unknown = await gateway(t, yaml(url, '{ grpc: true, service: nope.Nope, interval: 100ms }'))
  await eventually('an unknown service: unhealthy', 10_000, () => /unhealthy/.test(reasons(unknown)))
  t.match(unknown.readiness().reasons, [/gRPC health check \(nope\.Nope\): grpc-status 5: Health status unknown for service nope\.Nope\)$/])
  const status = (await (await fetch(`${unknown.adminUrl}/status.json`)).json()) as { upstreams: Array<{ health: { check: string } }> }
  t.equal(status.upstreams[0]!.health.check, 'gRPC health check (nope.Nope)')
})

t.test('a gRPC server without the health service, or probed with a plain GET, is unhealthy', async (t) => {
  const url = await grpcServer(t)
  const grpcCheck = await gateway(t, yaml(url, '{ grpc: true, interval: 100ms }'))
  await eventually('no health service: unhealthy', 10_000, () => /unhealthy/.test(reasons(grpcCheck)))
  t.match(reasons(grpcCheck), /gRPC health check: grpc-status 12/, 'UNIMPLEMENTED')
  // Why grpc: true exists: a gRPC server refuses a GET that is not a call.
  const getCheck = await gateway(t, yaml(url, '{ path: /healthz, interval: 100ms }'))
  await eventually('a GET: unhealthy', 10_000, () => /unhealthy/.test(reasons(getCheck)))
  t.match(reasons(getCheck), /GET \/healthz: status 4\d\d/)
})

t.test('health: grpc settings are checked at load', async (t) => {
  const problems = (health: string, extra?: string) => policyProblems(yaml('http://127.0.0.1:3000', health, extra)).join('\n')
  t.equal(problems('{ grpc: true }'), '')
  t.equal(problems('{ grpc: true, service: a.B }'), '')
  t.match(problems('{ grpc: true }', 'protocol: http1'), /health\.grpc needs an upstream with protocol h2c or h2/)
  t.match(problems('{ grpc: true, path: /healthz }'), /health\.path cannot go with grpc: true/)
  t.match(problems('{ interval: 1s }'), /health needs a path to GET, or grpc: true/)
  t.match(problems('{ path: /healthz, service: a.B }'), /health\.service names a gRPC service: it needs grpc: true/)
})
