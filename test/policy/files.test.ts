// CompiledPolicy.files: every file besides the policy that a load reads, so a change to one of
// them can be watched for without going back to the document.
import t from 'tap'
import path from 'node:path'
import { writeFileSync } from 'node:fs'
import { createLogger } from '../../src/log.js'
import { loadPolicy } from '../../src/policy/compile.js'
import { testPki } from '../support/certs.js'
import { tempFile } from '../support/harness.js'

t.test('secret files, admin token file and TLS files, as absolute paths', async (t) => {
  const pki = testPki()
  const server = pki.issue('gateway')
  const client = pki.issue('client')
  const policyFile = tempFile('policy.yaml', '')
  const dir = path.dirname(policyFile)
  writeFileSync(path.join(dir, 'hmac.key'), 'k'.repeat(32))
  writeFileSync(path.join(dir, 'admin.token'), 't'.repeat(32))
  writeFileSync(path.join(dir, 'ca.pem'), pki.ca.cert)
  writeFileSync(
    policyFile,
    `version: 1
listen: { port: 0, tls: { cert_file: "${server.certFile}", key_file: "${server.keyFile}" } }
issuers:
  internal: { issuer: internal, secret_file: hmac.key, audiences: [a], algorithms: [HS256] }
upstreams:
  plain: { url: "http://127.0.0.1:1" }
  secure: { url: "https://127.0.0.1:2", tls: { ca_file: ca.pem, cert_file: "${client.certFile}", key_file: "${client.keyFile}" } }
revocation: { backend: file, file: { path: revoked.json }, admin_token_file: admin.token }
routes:
  - { path: /a, upstream: plain, auth: { issuers: [internal] } }
  - { path: /b, upstream: secure, auth: none }
`,
  )
  const policy = loadPolicy(policyFile, createLogger('silent'))
  t.teardown(() => policy.revocation?.store.stop())
  t.same(
    [...policy.files].sort(),
    [
      path.join(dir, 'hmac.key'),
      path.join(dir, 'admin.token'),
      server.certFile,
      server.keyFile,
      path.join(dir, 'ca.pem'),
      client.certFile,
      client.keyFile,
    ].sort(),
  )
  t.notOk(policy.files.includes(path.join(dir, 'revoked.json')), 'the file backend reads its file itself, while running')
})
