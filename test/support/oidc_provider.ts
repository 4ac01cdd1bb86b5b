// The certified OpenID provider `oidc-provider`, started on 127.0.0.1 for the tests: one
// confidential client using client credentials, access tokens as JWTs (RFC 9068) for the
// resource `orders-api`, DPoP on (RFC 9449: a token requested with a proof is bound to its key),
// and certificate-bound tokens (RFC 8705) for the client certificate a test names.
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { Provider, type KoaContext } from 'oidc-provider'
import type { DpopClient } from './dpop.js'

export const CLIENT_ID = 'orders-service'
/** A client whose tokens oidc-provider binds to its certificate. */
export const PARTNER_ID = 'partner-service'
const CLIENT_SECRET = 'a-client-secret-long-enough-for-the-tests'

export interface TestProvider {
  /** The issuer (iss of its tokens), without a final slash. */
  issuer: string
  jwksUri: string
  /** An access token by client credentials: DPoP-bound with `dpop`; with `certificate` (PEM), the partner client's, bound to it. */
  token(options?: { dpop?: DpopClient; certificate?: string }): Promise<{ status: number; token: string; tokenType: string; body: Record<string, unknown> }>
  close(): Promise<void>
}

export async function startProvider(t: { teardown(fn: () => unknown): void }): Promise<TestProvider> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const signing = await generateKeyPair('ES256', { extractable: true })
  const certificates = new Map<string, string>()
  const provider = new Provider(issuer, {
    clients: [client(CLIENT_ID), client(PARTNER_ID, { tls_client_certificate_bound_access_tokens: true })],
    jwks: { keys: [{ ...(await exportJWK(signing.privateKey)), alg: 'ES256', use: 'sig', kid: 'test-key' }] },
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: true },
      // The certificate "presented" to the token endpoint: the one the test names for this request.
      mTLS: { enabled: true, certificateBoundAccessTokens: true, getCertificate: (ctx: KoaContext) => certificates.get(ctx.get('x-test-request') as string) },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://orders.example',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'orders:read',
          audience: 'orders-api',
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  })
  server.on('request', provider.callback())
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  t.teardown(close)
  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    async token(options = {}) {
      const request = randomUUID()
      const headers: Record<string, string> = {
        authorization: `Basic ${Buffer.from(`${options.certificate ? PARTNER_ID : CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
        'x-test-request': request,
      }
      if (options.certificate) certificates.set(request, options.certificate)
      if (options.dpop) headers.dpop = await tokenEndpointProof(options.dpop, `${issuer}/token`)
      const res = await fetch(`${issuer}/token`, { method: 'POST', headers, body: 'grant_type=client_credentials&scope=orders:read' })
      certificates.delete(request)
      const body = (await res.json()) as Record<string, unknown>
      return { status: res.status, token: String(body.access_token ?? ''), tokenType: String(body.token_type ?? ''), body }
    },
    close,
  }
}

/** A confidential client that uses client credentials. */
function client(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    client_id: id,
    client_secret: CLIENT_SECRET,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
    ...extra,
  }
}

/** A proof for the token endpoint (no access token yet, so no ath). */
function tokenEndpointProof(client: DpopClient, htu: string): Promise<string> {
  return new SignJWT({ jti: randomUUID(), htm: 'POST', htu, iat: Math.floor(Date.now() / 1000) })
    .setProtectedHeader({ alg: client.alg, typ: 'dpop+jwt', jwk: client.jwk })
    .sign(client.privateKey)
}

/** A gateway policy with the provider as issuer `idp` (its client_id as x-client-id, the binding in x-token-binding). */
export function providerPolicy(
  idp: Pick<TestProvider, 'issuer' | 'jwksUri'>,
  upstreamUrl: string,
  opts: { routes: string; listen?: string; issuerExtra?: string; extra?: string },
): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0${opts.listen ?? ''} }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp:
    issuer: ${idp.issuer}
    jwks_uri: ${idp.jwksUri}
    audiences: [orders-api]
    algorithms: [ES256]
${opts.issuerExtra ?? ''}
upstreams:
  orders: { url: "${upstreamUrl}", timeout: 2s }
identity_headers:
  x-client-id: client_id
binding_header: x-token-binding
${opts.extra ?? ''}
routes:
${opts.routes}
`
}
