// TLS: the listener (listen.tls, with certificates re-read when they change), upstreams over
// https (always verified; a private CA; mTLS client certificates), and require_https behind a
// trusted proxy. Certificates are made at test time (test/support/certs.ts).
import t from 'tap'
import { copyFileSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { connect as tlsConnect } from 'node:tls'
import { startEchoUpstream, type EchoUpstream } from '../../src/devkit/echo_upstream.js'
import { startGateway } from '../../src/server.js'
import { testPki, type CertFiles } from '../support/certs.js'
import { eventually, gateway, get, LogCapture, policyProblems, tempFile, upstream } from '../support/harness.js'
import { send } from '../hardening/raw.js'

const pki = testPki()

function yaml(up: { url: string }, opts: { listen?: string; upstream?: string; extra?: string } = {}): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0${opts.listen ?? ''} }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  orders: { url: "${up.url}", timeout: 2s${opts.upstream ?? ''} }
${opts.extra ?? ''}
routes:
  - { path: /public/**, upstream: orders, auth: none }
`
}

/** The subject CN of the certificate a TLS listener presents to a new connection. */
function presentedCn(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca }, () => {
      resolve(String(socket.getPeerCertificate().subject.CN))
      socket.destroy()
    })
    socket.on('error', reject)
  })
}

function httpsGet(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function httpsUpstream(t: { teardown(fn: () => unknown): void }, cert: CertFiles, clientCa?: Buffer): Promise<EchoUpstream> {
  const u = await startEchoUpstream({
    tls: { cert: cert.cert, key: cert.key, ...(clientCa ? { ca: clientCa, requestCert: true, rejectUnauthorized: true } : {}) },
  })
  t.teardown(() => u.close())
  return u
}

t.test('listen.tls terminates TLS; the upstream is told https', async (t) => {
  const up = await upstream(t)
  const cert = pki.issue('gateway')
  const gw = await gateway(t, yaml(up, { listen: `, tls: { cert_file: "${cert.certFile}", key_file: "${cert.keyFile}" }` }))
  t.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  const res = await httpsGet(`${gw.url}/public/x`, pki.ca.cert)
  t.equal(res.status, 200)
  t.equal(up.received.at(-1)!.headers['x-forwarded-proto'], 'https')
  await t.rejects(get(`http://127.0.0.1:${gw.port}/public/x`), 'plain HTTP on the TLS port gets no HTTP answer')
})

t.test('the listener certificate is re-read when its files change; a bad one keeps the old', async (t) => {
  const up = await upstream(t)
  const first = pki.issue('first')
  const second = pki.issue('second')
  const live = { certFile: tempFile('tls.crt', ''), keyFile: tempFile('tls.key', '') }
  copyFileSync(first.certFile, live.certFile)
  copyFileSync(first.keyFile, live.keyFile)
  const logs = new LogCapture()
  const gw = await startGateway({
    policyFile: tempFile('policy.yaml', yaml(up, { listen: `, tls: { cert_file: "${live.certFile}", key_file: "${live.keyFile}" }` })),
    logDestination: logs,
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    watch: true,
  })
  t.teardown(() => gw.close())
  t.equal(await presentedCn(gw.port, pki.ca.cert), 'first')

  // cert-manager renews in place; the directory watcher reloads the policy, which reads them.
  copyFileSync(second.keyFile, live.keyFile)
  copyFileSync(second.certFile, live.certFile)
  await eventually('the new certificate is presented', 20_000, async () => (await presentedCn(gw.port, pki.ca.cert)) === 'second')
  t.pass('new connections get the renewed certificate')
  t.equal((await httpsGet(`${gw.url}/public/x`, pki.ca.cert)).status, 200)

  const failures = () => gw.metrics.registry.getSingleMetricAsString('jwtgate_policy_reloads_total').then((m) => /result="failure"} ([1-9])/.test(m))
  writeFileSync(live.certFile, 'not a certificate\n')
  await eventually('the bad certificate fails a reload', 20_000, failures)
  t.match(logs.text, /is not a PEM certificate/, 'the reload failure says why')
  t.equal(await presentedCn(gw.port, pki.ca.cert), 'second', 'the old certificate stays in use')
  t.equal((await httpsGet(`${gw.url}/public/x`, pki.ca.cert)).status, 200, 'and the gateway keeps serving')
})

t.test('certificate problems are policy problems with their place', async (t) => {
  const up = { url: 'https://127.0.0.1:1' }
  const a = pki.issue('a')
  const b = pki.issue('b')
  const listen = (cert: string, key: string) => yaml(up, { listen: `, tls: { cert_file: "${cert}", key_file: "${key}" }` })
  t.match(policyProblems(listen(a.certFile, b.keyFile)), [/^2:\d+ the private key does not belong to the certificate/])
  t.match(policyProblems(listen(a.keyFile, a.keyFile)), [/^2:\d+ .* is not a PEM certificate/])
  t.match(policyProblems(listen('/nonexistent.crt', a.keyFile)), [/^2:\d+ cannot read \/nonexistent\.crt: ENOENT/])
  t.match(policyProblems(yaml(up, { upstream: `, tls: { cert_file: "${a.certFile}" }` })), [/a client certificate needs both cert_file and key_file/])
  t.match(policyProblems(yaml(up, { upstream: `, tls: { ca_file: "${a.keyFile}" }` })), [/ca_file|is not a PEM certificate/])
  t.match(policyProblems(yaml({ url: 'http://127.0.0.1:1' }, { upstream: `, tls: { ca_file: "${pki.ca.certFile}" }` })), [/tls is for https:\/\/ upstreams/])
  t.same(policyProblems(listen(a.certFile, a.keyFile)), [], 'a matching pair loads')
})

t.test('upstream https is verified: an unknown or self-signed certificate is a 502', async (t) => {
  const signed = await httpsUpstream(t, pki.issue('upstream'))
  const self = await httpsUpstream(t, pki.selfSigned('self'))
  for (const up of [signed, self]) {
    const gw = await gateway(t, yaml(up))
    const res = await get(`${gw.url}/public/x`)
    t.equal(res.status, 502, `${up.url}: not trusted without its CA`)
    t.equal(res.json.error, 'upstream_unreachable')
    t.equal(up.received.length, 0, 'nothing was sent to it')
  }
  const trusted = await gateway(t, yaml(signed, { upstream: `, tls: { ca_file: "${pki.ca.certFile}" } ` }))
  t.equal((await get(`${trusted.url}/public/x`)).status, 200, 'with ca_file naming its CA')
  t.equal(signed.received.length, 1)
  const wrongCa = await gateway(t, yaml(self, { upstream: `, tls: { ca_file: "${pki.ca.certFile}" } ` }))
  t.equal((await get(`${wrongCa.url}/public/x`)).status, 502, 'ca_file replaces the system CAs; it does not trust everything')
})

t.test('mTLS: the client certificate of the upstream is presented', async (t) => {
  const up = await httpsUpstream(t, pki.issue('mtls-upstream'), pki.ca.cert)
  const without = await gateway(t, yaml(up, { upstream: `, tls: { ca_file: "${pki.ca.certFile}" }` }))
  t.equal((await get(`${without.url}/public/x`)).status, 502, 'an upstream requiring a client certificate refuses us without one')
  const client = pki.issue('jwtgate-client')
  const withCert = await gateway(
    t,
    yaml(up, { upstream: `, tls: { ca_file: "${pki.ca.certFile}", cert_file: "${client.certFile}", key_file: "${client.keyFile}" }` }),
  )
  t.equal((await get(`${withCert.url}/public/x`)).status, 200)
  t.equal(up.received.at(-1)!.clientCertificate, 'jwtgate-client')
})

t.test('upstreams sharing an origin must share connection settings', async (t) => {
  const text = `version: 1
listen: { port: 0 }
upstreams:
  a: { url: "https://127.0.0.1:8443/a" }
  b: { url: "https://127.0.0.1:8443/b", connections: 4 }
  c: { url: "https://127.0.0.1:8443/c" }
routes: [ { path: /a, upstream: a, auth: none }, { path: /b, upstream: b, auth: none }, { path: /c, upstream: c, auth: none } ]
`
  t.match(policyProblems(text), [/^5:\d+ upstreams\.a has the same origin \(https:\/\/127\.0\.0\.1:8443\) with other connections or tls settings/])
})

t.test('require_https: plain HTTP is redirected (GET, HEAD) or refused; trusted proxies are believed', async (t) => {
  const up = await upstream(t)
  const gw = await gateway(t, yaml(up, { extra: 'require_https: true\ntrusted_proxies: [127.0.0.1/32, "::1"]' }))
  let res = await send(gw.port, { target: '/public/x?q=1' })
  t.equal(res.status, 308, 'a direct plain-HTTP GET')
  t.equal(res.headers.location, 'https://127.0.0.1/public/x?q=1')
  res = await send(gw.port, {
    target: '/public/x',
    headers: [
      ['Host', 'api.example.com:8080'],
      ['X-Forwarded-Proto', 'http'],
    ],
  })
  t.equal(res.status, 308, 'a GET the trusted proxy received over http')
  t.equal(res.headers.location, 'https://api.example.com/public/x')
  res = await send(gw.port, { method: 'POST', target: '/public/x', headers: [['X-Forwarded-Proto', 'http']], body: 'secret' })
  t.equal(res.status, 403, 'a POST: its body already went in clear, so no redirect')
  t.equal(JSON.parse(res.body).error, 'https_required')
  t.equal(res.headers['www-authenticate'], undefined)
  res = await send(gw.port, { target: '/public/x', headers: [['Host', 'bad host']] })
  t.equal(res.status, 403, 'no redirect to a Host that is not a host')
  t.equal(up.received.length, 0, 'none of them reached the upstream')

  res = await send(gw.port, { target: '/public/x', headers: [['X-Forwarded-Proto', 'https']] })
  t.equal(res.status, 200, 'the trusted proxy says https')
  t.equal(up.received.at(-1)!.headers['x-forwarded-proto'], 'https', 'and the upstream is told so')

  const untrusting = await gateway(t, yaml(up, { extra: 'require_https: true\ntrusted_proxies: [10.0.0.0/8]' }))
  res = await send(untrusting.port, { target: '/public/x', headers: [['X-Forwarded-Proto', 'https']] })
  t.equal(res.status, 308, 'X-Forwarded-Proto from a peer that is not a trusted proxy is ignored')

  const plain = await gateway(t, yaml(up, { extra: 'trusted_proxies: [10.0.0.0/8]' }))
  await send(plain.port, { target: '/public/x', headers: [['X-Forwarded-Proto', 'https']] })
  t.equal(up.received.at(-1)!.headers['x-forwarded-proto'], 'http', 'nor passed on to the upstream')

  const cert = pki.issue('https-only')
  const tls = await gateway(t, yaml(up, { listen: `, tls: { cert_file: "${cert.certFile}", key_file: "${cert.keyFile}" }`, extra: 'require_https: true' }))
  t.equal((await httpsGet(`${tls.url}/public/x`, pki.ca.cert)).status, 200, 'a request over the TLS listener passes')

  t.match(policyProblems(yaml(up, { extra: 'trusted_proxies: [10.0.0.0/33, nope, 10.0.0.0/8]' })), [
    /"10\.0\.0\.0\/33" has a prefix length that is not 0 to 32/,
    /"nope" is not an IP address or CIDR/,
  ])
})
