// Distinct valid tokens for the benchmark. RS256 signing costs ~1 ms a token, so the signatures
// run on libuv's thread pool (crypto.sign with a callback) rather than one by one.
import { createHmac, sign, type KeyObject } from 'node:crypto'

export type Signer = { alg: 'RS256' | 'ES256'; kid: string; privateKey: KeyObject } | { alg: 'HS256'; secret: string }

export interface TokenClaims {
  iss: string
  aud: string
  /** Seconds the tokens stay valid; long enough for a lengthened run. */
  lifetimeS: number
  /** A cnf claim for token i (a DPoP-bound token's { jkt }). */
  cnf?: (i: number) => Record<string, unknown>
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

function signAsync(signer: Signer, input: string): Promise<string> {
  if (signer.alg === 'HS256') return Promise.resolve(createHmac('sha256', signer.secret).update(input).digest('base64url'))
  return new Promise((resolve, reject) => {
    sign('sha256', Buffer.from(input), { key: signer.privateKey, dsaEncoding: 'ieee-p1363' }, (err, signature) => {
      if (err) reject(err)
      else resolve(signature.toString('base64url'))
    })
  })
}

/** `count` tokens differing in sub and jti, signed `batch` at a time. */
export async function makeTokens(signer: Signer, claims: TokenClaims, count: number, batch = 64): Promise<string[]> {
  const now = Math.floor(Date.now() / 1000)
  const header = b64url({ alg: signer.alg, typ: 'JWT', ...(signer.alg === 'HS256' ? {} : { kid: signer.kid }) })
  const tokens: string[] = []
  for (let start = 0; start < count; start += batch) {
    const inputs = Array.from({ length: Math.min(batch, count - start) }, (_, k) => {
      const i = start + k
      const cnf = claims.cnf ? { cnf: claims.cnf(i) } : {}
      return `${header}.${b64url({ iss: claims.iss, sub: `user-${i}`, aud: claims.aud, roles: ['reader'], jti: `bench-${i}`, iat: now, exp: now + claims.lifetimeS, ...cnf })}`
    })
    const signatures = await Promise.all(inputs.map((input) => signAsync(signer, input)))
    for (const [k, input] of inputs.entries()) tokens.push(`${input}.${signatures[k]}`)
  }
  return tokens
}
