// The DPoP row's requests: clients with their own ES256 keys, RS256 access tokens bound to them
// (cnf.jkt), and one proof per request. A proof is accepted once (its jti is remembered), so
// every request of every run needs its own: they are signed ahead, per round, for the URL the
// gateway serves, and sent by tokens.lua as `Authorization: DPoP <token>` and `DPoP: <proof>`.
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'

export interface DpopClient {
  privateKey: KeyObject
  jwk: Record<string, unknown>
  jkt: string
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** `count` clients, each with its own P-256 key and its RFC 7638 thumbprint. */
export function dpopClients(count: number): DpopClient[] {
  return Array.from({ length: count }, () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const { crv, x, y } = publicKey.export({ format: 'jwk' })
    const jwk = { kty: 'EC', crv, x, y }
    return {
      privateKey,
      jwk,
      jkt: createHash('sha256')
        .update(JSON.stringify({ crv, kty: 'EC', x, y }))
        .digest('base64url'),
    }
  })
}

function signProof(client: DpopClient, payload: Record<string, unknown>): Promise<string> {
  const input = `${b64url({ alg: 'ES256', typ: 'dpop+jwt', jwk: client.jwk })}.${b64url(payload)}`
  return new Promise((resolve, reject) => {
    sign('sha256', Buffer.from(input), { key: client.privateKey, dsaEncoding: 'ieee-p1363' }, (err, signature) => {
      if (err) reject(err)
      else resolve(`${input}.${signature.toString('base64url')}`)
    })
  })
}

/**
 * `count` request lines `DPoP <token>\t<proof>`, request i by client i (mod the clients), whose
 * token is tokens[i]; `tag` keeps the jti values of two batches apart. Signed `batch` at a time
 * on libuv's thread pool.
 */
export async function proofLines(clients: DpopClient[], tokens: string[], htu: string, count: number, tag: string, batch = 256): Promise<string[]> {
  const iat = Math.floor(Date.now() / 1000)
  const hashes = tokens.map((t) => createHash('sha256').update(t).digest('base64url'))
  const lines: string[] = []
  for (let start = 0; start < count; start += batch) {
    const size = Math.min(batch, count - start)
    const proofs = await Promise.all(
      Array.from({ length: size }, (_, k) => {
        const i = (start + k) % clients.length
        return signProof(clients[i]!, { jti: `${tag}-${start + k}`, htm: 'GET', htu, iat, ath: hashes[i] })
      }),
    )
    for (const [k, proof] of proofs.entries()) lines.push(`DPoP ${tokens[(start + k) % clients.length]}\t${proof}`)
  }
  return lines
}
