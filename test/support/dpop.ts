// A DPoP client for the tests, built on jose (an implementation independent of the gateway's):
// a key pair, its RFC 7638 thumbprint (what a DPoP-bound token's cnf.jkt holds), and proofs.
import { createHash, randomUUID } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'

export interface DpopClient {
  alg: string
  privateKey: CryptoKey
  jwk: JWK
  /** The key's thumbprint: the cnf.jkt of tokens bound to it. */
  jkt: string
  /** A proof for one request; `claims` and `header` override or remove (undefined) its parts. */
  proof(method: string, url: string, token: string, claims?: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>
}

export async function dpopClient(alg = 'ES256'): Promise<DpopClient> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = await exportJWK(publicKey)
  return {
    alg,
    privateKey,
    jwk,
    jkt: await calculateJwkThumbprint(jwk),
    proof(method, url, token, claims = {}, header = {}) {
      const payload = { jti: randomUUID(), htm: method, htu: url, iat: Math.floor(Date.now() / 1000), ath: tokenHash(token), ...claims }
      return new SignJWT(payload).setProtectedHeader({ alg, typ: 'dpop+jwt', jwk, ...header }).sign(privateKey)
    },
  }
}

/** base64url SHA-256, as a proof's ath holds the access token's hash. */
export function tokenHash(text: string): string {
  return createHash('sha256').update(text).digest('base64url')
}

/** The headers of a request with a DPoP-bound token and its proof. */
export function dpopHeaders(token: string, proof: string): Record<string, string> {
  return { authorization: `DPoP ${token}`, dpop: proof }
}
