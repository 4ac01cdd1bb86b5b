// `jwtgate explain` and `jwtgate test` on routes that check sender-constrained tokens: what a
// proof or certificate must be, a real proof checked (--dpop), a certificate presented
// (--client-cert), and claims whose binding a case takes as proven (sender).
import t from 'tap'
import { runPolicyTests, testRunReport } from '../../src/cli/policy_test.js'
import { explainHere } from '../support/cli.js'
import { testPki } from '../support/certs.js'
import { dpopClient } from '../support/dpop.js'
import { issuer, tempFile, upstream } from '../support/harness.js'

t.test('explain says what a proof must contain, and checks one', async (t) => {
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
    binding: { method: dpop, required: true }
upstreams:
  orders: { url: "${up.url}" }
binding_header: x-token-binding
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
  - { path: /partners/**, upstream: orders, auth: { issuers: [idp], binding: { method: mtls } } }
`,
  )
  const client = await dpopClient()
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', cnf: { jkt: client.jkt } })

  const without = await explainHere(['-c', file, 'GET', '/api/orders', '--host', 'api.example', '--token', token, '--json'])
  t.equal(without.code, 1)
  const e = JSON.parse(without.stdout)
  t.match(e, { decision: 'deny', reason: 'binding_mismatch' })
  t.same(e.requires.binding, [{ issuer: 'idp', method: 'dpop', required: true }])
  t.match(e.requires.dpop_proof, { typ: 'dpop+jwt', htm: 'GET', htu: 'http://api.example/api/orders (query and fragment ignored)', ath: /^[A-Za-z0-9_-]{43}$/ })

  const proof = await client.proof('GET', 'http://api.example/api/orders', token)
  const checked = await explainHere(['-c', file, 'GET', '/api/orders?x=1', '--host', 'api.example', '--token', token, '--dpop', proof])
  t.equal(checked.code, 0, checked.stdout)
  t.match(checked.stdout, /binding\s+the token is sender-constrained: dpop/)
  t.match(checked.stdout, /a DPoP-bound token comes with a DPoP proof:/)
  const elsewhere = await explainHere(['-c', file, 'GET', '/api/orders', '--host', 'other.example', '--token', token, '--dpop', proof, '--json'])
  t.match(JSON.parse(elsewhere.stdout), { decision: 'deny', reason: 'invalid_dpop_proof', description: 'the DPoP proof htu is not the request URL' })

  // A certificate-bound token, with the certificate it names and with another.
  const pki = testPki()
  const [alice, bob] = [pki.issue('alice'), pki.issue('bob')]
  const { createHash, X509Certificate } = await import('node:crypto')
  const x5t = createHash('sha256').update(new X509Certificate(alice.cert).raw).digest('base64url')
  const bound = idp.sign({ sub: 'p', aud: 'orders-api', cnf: { 'x5t#S256': x5t } })
  t.equal((await explainHere(['-c', file, 'GET', '/partners/x', '--token', bound, '--client-cert', alice.certFile])).code, 0)
  const other = await explainHere(['-c', file, 'GET', '/partners/x', '--token', bound, '--client-cert', bob.certFile, '--json'])
  t.match(JSON.parse(other.stdout), { reason: 'binding_mismatch', requires: { client_certificate: /cnf.x5t#S256/ } })

  // Claims given as verified: the binding is what --sender says the request proves.
  const claims = JSON.stringify({ sub: 'alice', cnf: { jkt: client.jkt } })
  t.equal((await explainHere(['-c', file, 'GET', '/api/x', '--claims', claims, '--sender', 'dpop'])).code, 0)
  t.match(JSON.parse((await explainHere(['-c', file, 'GET', '/api/x', '--claims', claims, '--json'])).stdout), { reason: 'binding_mismatch' })
  t.match(JSON.parse((await explainHere(['-c', file, 'GET', '/api/x', '--claims', '{"sub":"bob"}', '--json'])).stdout), { reason: 'unbound_token' })
  await t.rejects(explainHere(['-c', file, 'GET', '/api/x', '--dpop', proof]), /--dpop and --client-cert go with --token/)

  // jwtgate test: the same, case by case.
  const cases = tempFile(
    'binding.test.yaml',
    `cases:
  - { request: GET /api/x, token: { sub: alice, cnf: { jkt: ${client.jkt} } }, sender: [dpop], expect: allow, headers: { x-token-binding: dpop } }
  - { request: GET /api/x, token: { sub: alice, cnf: { jkt: ${client.jkt} } }, expect: binding_mismatch }
  - { request: GET /api/x, token: { sub: bob }, expect: unbound_token }
  - { request: GET /partners/x, token: { sub: p, cnf: { "x5t#S256": ${x5t} } }, sender: [mtls], expect: allow, headers: { x-token-binding: mtls } }
  - { request: GET /partners/x, token: { sub: p }, expect: allow, headers: { x-token-binding: none } }
`,
  )
  const report = testRunReport(await runPolicyTests(file, [cases]))
  t.equal(report.code, 0, report.stdout + report.stderr)
  t.match(report.stdout, /5 passed/)
})
