// Certificate-bound access tokens (RFC 8705 §3): oidc-provider binds a token to the client
// certificate it was shown (cnf.x5t#S256); the gateway accepts it only from a client presenting
// that certificate on its TLS connection, or, behind a TLS-terminating proxy in trusted_proxies,
// named in the proxy's header. A test CA and its certificates are made at test time.
import { createHash, X509Certificate } from 'node:crypto'
import { request as httpsRequest } from 'node:https'
import t from 'tap'
import { testPki, type CertFiles } from '../support/certs.js'
import { gateway, get, policyProblems, upstream } from '../support/harness.js'
import { providerPolicy, startProvider, type TestProvider } from '../support/oidc_provider.js'

const pki = testPki()
const server = pki.issue('gateway')
const alice = pki.issue('alice')
const bob = pki.issue('bob')
const stranger = pki.selfSigned('stranger')

const ROUTES = `  - { path: /api/**, upstream: orders, auth: { issuers: [idp], binding: { method: mtls, required: true } } }
  - { path: /any/**, upstream: orders, auth: { issuers: [idp], binding: { method: any } } }`

function bindingPolicy(idp: Pick<TestProvider, 'issuer' | 'jwksUri'>, upstreamUrl: string, listen: string, extra = ''): string {
  return providerPolicy(idp, upstreamUrl, { routes: ROUTES, listen, extra })
}

const tlsListen = (required = false) =>
  `, tls: { cert_file: ${server.certFile}, key_file: ${server.keyFile}, client_certificates: { ca_file: ${pki.ca.certFile}${required ? ', required: true' : ''} } }`

/** GET over TLS with an optional client certificate; status and parsed body, or the connection error. */
function tlsGet(url: string, token: string, client?: CertFiles): Promise<{ status: number; json: Record<string, unknown> } | { error: string }> {
  return new Promise((resolve) => {
    const options = {
      ca: pki.ca.cert,
      agent: false as const,
      headers: { authorization: `Bearer ${token}` },
      ...(client ? { cert: client.cert, key: client.key } : {}),
    }
    const req = httpsRequest(url, options, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(body || '{}') as Record<string, unknown> }))
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }))
    req.end()
  })
}

const thumbprintHex = (c: CertFiles) => createHash('sha256').update(new X509Certificate(c.cert).raw).digest('hex')

t.test('a certificate-bound token from oidc-provider passes only with its certificate on the connection', async (t) => {
  const idp = await startProvider(t)
  const up = await upstream(t)
  const gw = await gateway(t, bindingPolicy(idp, up.url, tlsListen()))
  const issued = await idp.token({ certificate: alice.cert.toString() })
  t.equal(issued.status, 200, JSON.stringify(issued.body))
  const token = issued.token
  const cnf = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).cnf
  t.equal(cnf['x5t#S256'], Buffer.from(thumbprintHex(alice), 'hex').toString('base64url'), 'bound to alice')

  const ok = await tlsGet(`${gw.url}/api/x`, token, alice)
  t.match(ok, { status: 200 })
  t.equal(up.received.at(-1)!.headers['x-token-binding'], 'mtls')
  t.equal(up.received.at(-1)!.headers['x-client-id'], 'partner-service')
  t.match(await tlsGet(`${gw.url}/api/x`, token, bob), {
    status: 401,
    json: { error: 'binding_mismatch', message: 'the client certificate is not the one the token is bound to' },
  })
  t.match(await tlsGet(`${gw.url}/api/x`, token), {
    status: 401,
    json: { error: 'binding_mismatch', message: 'the token is bound to a client certificate; none was presented' },
  })
  // A certificate the CA did not sign does not count, even one with the same subject.
  t.match(await tlsGet(`${gw.url}/api/x`, token, stranger), { status: 401, json: { error: 'binding_mismatch' } })
  // An unbound token where binding is required; accepted where it is not, marked none.
  const unbound = (await idp.token()).token
  t.match(await tlsGet(`${gw.url}/api/x`, unbound, alice), { status: 401, json: { error: 'unbound_token' } })
  t.match(await tlsGet(`${gw.url}/any/x`, unbound, alice), { status: 200 })
  t.equal(up.received.at(-1)!.headers['x-token-binding'], 'none')
  t.match(await tlsGet(`${gw.url}/any/x`, token, alice), { status: 200 })
})

t.test('client_certificates.required: a client without a certificate the CA signed cannot connect', async (t) => {
  const idp = await startProvider(t)
  const up = await upstream(t)
  const gw = await gateway(t, bindingPolicy(idp, up.url, tlsListen(true)))
  const { token } = await idp.token({ certificate: alice.cert.toString() })
  t.match(await tlsGet(`${gw.url}/api/x`, token, alice), { status: 200 })
  t.ok('error' in (await tlsGet(`${gw.url}/api/x`, token)), 'no certificate: the handshake fails')
  t.ok('error' in (await tlsGet(`${gw.url}/api/x`, token, stranger)), 'a certificate of another CA: the handshake fails')
})

t.test('behind a TLS-terminating proxy: the certificate header counts from trusted proxies only', async (t) => {
  const idp = await startProvider(t)
  const up = await upstream(t)
  const { token } = await idp.token({ certificate: alice.cert.toString() })
  const escapedPem = encodeURIComponent(alice.cert.toString())
  const xfcc = (c: CertFiles) => `By=spiffe://cluster.local/ns/default/sa/gateway;Hash=${thumbprintHex(c)};Subject="CN=${c === alice ? 'alice' : 'bob'}";URI=`

  const trusted = await gateway(
    t,
    bindingPolicy(idp, up.url, '', 'trusted_proxies: [127.0.0.1/32]\nclient_certificate_header: { name: x-forwarded-client-cert, format: xfcc }'),
  )
  const call = (g: { url: string }, headers: Record<string, string>) => get(`${g.url}/api/x`, { authorization: `Bearer ${token}`, ...headers })
  t.equal((await call(trusted, { 'x-forwarded-client-cert': xfcc(alice) })).status, 200, 'Envoy XFCC Hash')
  t.equal(up.received.at(-1)!.headers['x-forwarded-client-cert'], undefined, 'the header is not passed on')
  t.equal(up.received.at(-1)!.headers['x-token-binding'], 'mtls')
  t.equal((await call(trusted, { 'x-forwarded-client-cert': `Cert="${escapedPem}";Subject="CN=alice"` })).status, 200, 'Envoy XFCC Cert')
  t.match((await call(trusted, { 'x-forwarded-client-cert': xfcc(bob) })).json, { error: 'binding_mismatch' }, 'another certificate')
  t.match((await call(trusted, {})).json, { error: 'binding_mismatch' }, 'no header')
  t.match((await call(trusted, { 'x-forwarded-client-cert': `${xfcc(bob)},${xfcc(alice)}` })).json, { error: 'binding_mismatch' }, 'several elements: whose?')

  const pem = await gateway(
    t,
    bindingPolicy(idp, up.url, '', 'trusted_proxies: [127.0.0.1/32]\nclient_certificate_header: { name: x-ssl-client-cert, format: pem }'),
  )
  t.equal((await call(pem, { 'x-ssl-client-cert': escapedPem })).status, 200, 'a URL-encoded PEM (nginx $ssl_client_escaped_cert)')
  t.equal(
    (await call(pem, { 'x-ssl-client-cert': encodeURIComponent(new X509Certificate(alice.cert).raw.toString('base64')) })).status,
    200,
    'its base64 body alone',
  )
  t.match((await call(pem, { 'x-ssl-client-cert': 'garbage' })).json, { error: 'binding_mismatch' })

  // 127.0.0.1 is not a trusted proxy here: its header is anyone's, so it is ignored.
  const untrusted = await gateway(
    t,
    bindingPolicy(idp, up.url, '', 'trusted_proxies: [10.0.0.0/8]\nclient_certificate_header: { name: x-forwarded-client-cert, format: xfcc }'),
  )
  const res = await call(untrusted, { 'x-forwarded-client-cert': xfcc(alice) })
  t.equal(res.status, 401)
  t.match(res.json, { error: 'binding_mismatch', message: 'the token is bound to a client certificate; none was presented' })
})

t.test('the policy: required needs a CA', async (t) => {
  const idp = { issuer: 'https://idp.example', jwksUri: 'https://idp.example/jwks' } as TestProvider
  const listen = `, tls: { cert_file: ${server.certFile}, key_file: ${server.keyFile}, client_certificates: { required: true } }`
  t.match(policyProblems(bindingPolicy(idp, 'http://127.0.0.1:1', listen)), [/client_certificates.required needs the ca_file/])
  t.same(policyProblems(bindingPolicy(idp, 'http://127.0.0.1:1', tlsListen(true))), [])
})
