// A local token issuer for the demo and the tests: fresh keys, its JWKS served on loopback, and
// tokens signed on request. Never for production: the private keys live in this process.
import { constants, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface DevKey {
  kid: string
  alg: string
  privateKey: KeyObject
  publicJwk: Record<string, unknown>
}

export type KeySpec = {
  kid?: string
  alg: 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA'
  modulusLength?: number
  publishAlg?: boolean
}

export function generateDevKey(spec: KeySpec): DevKey {
  const kid = spec.kid ?? randomUUID()
  const { privateKey, publicKey } = spec.alg.startsWith('ES')
    ? generateKeyPairSync('ec', { namedCurve: { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' }[spec.alg as 'ES256'] })
    : spec.alg === 'EdDSA'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('rsa', { modulusLength: spec.modulusLength ?? 2048 })
  const publicJwk: Record<string, unknown> = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' }
  if (spec.publishAlg !== false) publicJwk.alg = spec.alg
  return { kid, alg: spec.alg, privateKey, publicJwk }
}

/**
 * Signs exactly the claims given, whatever their types: tests need tokens a careful signer
 * would refuse to make (a string exp, an iat in the future).
 */
export function signToken(key: DevKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64url({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header })}.${b64url(claims)}`
  const bits = Number(key.alg.slice(2)) || 256
  const digest = key.alg === 'EdDSA' ? null : `sha${bits}`
  const signature = key.alg.startsWith('PS')
    ? sign(digest, Buffer.from(input), { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: bits / 8 })
    : sign(digest, Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
  return `${input}.${signature.toString('base64url')}`
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

export interface DevIssuer {
  /** The base URL; tokens carry it as iss. */
  url: string
  jwksUri: string
  keys: DevKey[]
  /** How many times the JWKS was fetched. */
  fetches: number
  /** Replace what the JWKS endpoint answers: a status, a body, a delay. */
  respond: { status: number; body?: string; delayMs: number; cacheControl?: string }
  /** Where its OIDC discovery document is served: `{url without a final /}/.well-known/openid-configuration`. */
  discoveryUri: string
  /** How many times the discovery document was fetched. */
  discoveryFetches: number
  /** Replace what the discovery endpoint answers: a status, a whole body, a delay, or just the document's fields. */
  discovery: { status: number; body?: string; delayMs: number; document?: Record<string, unknown>; headers?: Record<string, string> }
  sign(claims: Record<string, unknown>, options?: { key?: DevKey; header?: Record<string, unknown>; expiresInSeconds?: number }): string
  close(): Promise<void>
}

/**
 * `path` gives the issuer a path, as Keycloak's `…/realms/demo` (without a final slash); by
 * default the issuer is `http://127.0.0.1:<port>/`.
 */
export async function startDevIssuer(options: { port?: number; keys?: KeySpec[]; path?: string } = {}): Promise<DevIssuer> {
  const keys = (options.keys ?? [{ alg: 'RS256' }]).map(generateDevKey)
  const issuer: DevIssuer = {
    url: '',
    jwksUri: '',
    keys,
    fetches: 0,
    respond: { status: 200, delayMs: 0 },
    discoveryUri: '',
    discoveryFetches: 0,
    discovery: { status: 200, delayMs: 0 },
    sign(claims, { key = keys[0]!, header, expiresInSeconds = 300 } = {}) {
      const now = Math.floor(Date.now() / 1000)
      return signToken(key, { iss: issuer.url, iat: now, exp: now + expiresInSeconds, ...claims }, header)
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  const server: Server = createServer((req, res) => {
    if (req.url === new URL(issuer.discoveryUri).pathname) {
      issuer.discoveryFetches++
      const { status, body, delayMs, document, headers } = issuer.discovery
      const standard = {
        issuer: issuer.url,
        jwks_uri: issuer.jwksUri,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: [...new Set(issuer.keys.map((k) => k.alg))],
      }
      setTimeout(
        () => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(body ?? JSON.stringify({ ...standard, ...document })),
        delayMs,
      ).unref()
      return
    }
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end()
      return
    }
    issuer.fetches++
    const { status, body, delayMs, cacheControl } = issuer.respond
    setTimeout(() => {
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (cacheControl) headers['cache-control'] = cacheControl
      res.writeHead(status, headers).end(body ?? JSON.stringify({ keys: issuer.keys.map((k) => k.publicJwk) }))
    }, delayMs).unref()
  })
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  issuer.url = options.path ? `http://127.0.0.1:${port}${options.path}` : `http://127.0.0.1:${port}/`
  issuer.jwksUri = `http://127.0.0.1:${port}/.well-known/jwks.json`
  issuer.discoveryUri = `${issuer.url.replace(/\/$/, '')}/.well-known/openid-configuration`
  return issuer
}
