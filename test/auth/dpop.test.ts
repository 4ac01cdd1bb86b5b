// DPoP proof checks (RFC 9449 §4.3) against proofs built by an independent implementation, the
// jose package, with real keys.
import t from 'tap'
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import { ProofKeys, sameResource, verifyProof, type DpopSettings } from '../../src/auth/dpop.js'
import { DpopNonces } from '../../src/auth/dpop_nonce.js'
import { isDenial, type Denial } from '../../src/http/denial.js'

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl'
const URL_ = 'https://api.example.com/orders/7'
const ath = (token: string) => createHash('sha256').update(token).digest('base64url')

function settings(extra: Partial<DpopSettings> = {}): DpopSettings {
  const algorithms = new Set(['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519'])
  return { algorithms, algs: [...algorithms].join(' '), maxAgeMs: 60_000, maxProofBytes: 4096, nonces: null, keys: new ProofKeys(), ...extra }
}

interface Client {
  alg: string
  privateKey: CryptoKey
  jwk: JWK
  jkt: string
}

async function client(alg: string, options: Record<string, unknown> = {}): Promise<Client> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...options })
  const jwk = await exportJWK(publicKey)
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) }
}

/** A proof as a DPoP client library makes it; `claims` and `header` override its parts. */
function proof(c: Client, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: randomUUID(), htm: 'GET', htu: URL_, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN), ...claims })
    .setProtectedHeader({ alg: c.alg, typ: 'dpop+jwt', jwk: c.jwk, ...header })
    .sign(c.privateKey)
}

const request = (extra: Partial<{ method: string; url: string; accessToken: string }> = {}) => ({ method: 'GET', url: URL_, accessToken: TOKEN, ...extra })

function reasonOf(result: unknown): string {
  return isDenial(result) ? `${result.reason}: ${result.description}` : 'accepted'
}

t.test('accepts a proof from jose for each allowed key type, with the RFC 7638 thumbprint jose computes', async (t) => {
  for (const alg of ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519']) {
    const c = await client(alg)
    const result = verifyProof(await proof(c), request(), settings(), Date.now())
    t.notOk(isDenial(result), `${alg}: ${reasonOf(result)}`)
    if (!isDenial(result)) t.equal(result.jkt, c.jkt, `${alg} thumbprint`)
  }
})

t.test('refuses a proof for another method, another URL, or another token', async (t) => {
  const c = await client('ES256')
  const s = settings()
  const now = Date.now()
  t.match(reasonOf(verifyProof(await proof(c, { htm: 'POST' }), request(), s, now)), /^invalid_dpop_proof: .*htm/)
  for (const htu of [
    'https://api.example.com/orders/8',
    'https://evil.example.com/orders/7',
    'http://api.example.com/orders/7',
    'https://api.example.com:8443/orders/7',
  ]) {
    t.match(reasonOf(verifyProof(await proof(c, { htu }), request(), s, now)), /htu/, htu)
  }
  t.match(reasonOf(verifyProof(await proof(c, { ath: ath('another token') }), request(), s, now)), /ath/)
  t.match(reasonOf(verifyProof(await proof(c, { ath: undefined }), request(), s, now)), /no ath/)
  t.match(reasonOf(verifyProof(await proof(c, { jti: undefined }), request(), s, now)), /no jti/)
  t.match(reasonOf(verifyProof(await proof(c, { htm: undefined }), request(), s, now)), /htm/)
})

t.test('htu: query and fragment ignored; compared after RFC 3986 normalization', async (t) => {
  t.ok(sameResource(`${URL_}?page=2#top`, URL_))
  t.ok(sameResource('HTTPS://API.example.com:443/orders/./x/../7', URL_))
  t.ok(sameResource('https://api.example.com/%6Frders/7', URL_), 'an unreserved character percent-encoded')
  t.ok(sameResource('https://h.example/a%2fb', 'https://h.example/a%2Fb'), 'percent-encoding case')
  t.notOk(sameResource('https://h.example/a%2Fb', 'https://h.example/a/b'), 'an encoded slash is not a slash')
  t.notOk(sameResource('https://user@api.example.com/orders/7', URL_), 'user info')
  t.notOk(sameResource('ftp://api.example.com/orders/7', 'ftp://api.example.com/orders/8'), 'only http(s)')
  t.notOk(sameResource('/orders/7', URL_), 'a relative htu')
  const c = await client('ES256')
  t.equal(reasonOf(verifyProof(await proof(c, { htu: `${URL_}?q=1` }), request(), settings(), Date.now())), 'accepted')
})

t.test('iat: within proof_max_age either way', async (t) => {
  const c = await client('ES256')
  const now = Date.now()
  const s = settings()
  const at = (seconds: number) => proof(c, { iat: Math.floor(now / 1000) + seconds })
  t.equal(reasonOf(verifyProof(await at(-50), request(), s, now)), 'accepted')
  t.match(reasonOf(verifyProof(await at(-61), request(), s, now)), /too old/)
  t.equal(reasonOf(verifyProof(await at(50), request(), s, now)), 'accepted')
  t.match(reasonOf(verifyProof(await at(61), request(), s, now)), /future/)
  t.match(reasonOf(verifyProof(await proof(c, { iat: String(Math.floor(now / 1000)) }), request(), s, now)), /no iat/)
})

t.test('refuses alg none, HS256, an alg outside the allow-list, and a jwk that does not fit the alg', async (t) => {
  const c = await client('ES256')
  const now = Date.now()
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const claims = { jti: 'x', htm: 'GET', htu: URL_, iat: Math.floor(now / 1000), ath: ath(TOKEN) }
  const none = `${b64({ alg: 'none', typ: 'dpop+jwt', jwk: c.jwk })}.${b64(claims)}.`
  t.match(reasonOf(verifyProof(none, request(), settings(), now)), /^invalid_dpop_proof/)
  const noneSigned = `${b64({ alg: 'none', typ: 'dpop+jwt', jwk: c.jwk })}.${b64(claims)}.AAAA`
  t.match(reasonOf(verifyProof(noneSigned, request(), settings(), now)), /alg is not allowed/)
  const hs = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: c.jwk }).sign(new TextEncoder().encode('s'.repeat(32)))
  t.match(reasonOf(verifyProof(hs, request(), settings(), now)), /alg is not allowed/)
  const es512 = await client('ES512')
  t.match(reasonOf(verifyProof(await proof(es512), request(), settings(), now)), /alg is not allowed/)
  // A P-384 key claimed as ES256: signed with P-384 by hand, since jose refuses to.
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
  const input = `${b64({ alg: 'ES256', typ: 'dpop+jwt', jwk: p384.publicKey.export({ format: 'jwk' }) })}.${b64(claims)}`
  const sig = sign('sha256', Buffer.from(input), { key: p384.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')
  t.match(reasonOf(verifyProof(`${input}.${sig}`, request(), settings(), now)), /does not fit ES256/)
  // A 1024-bit RSA key, signed by hand too.
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const weakInput = `${b64({ alg: 'RS256', typ: 'dpop+jwt', jwk: weak.publicKey.export({ format: 'jwk' }) })}.${b64(claims)}`
  const weakSig = sign('sha256', Buffer.from(weakInput), weak.privateKey).toString('base64url')
  t.match(reasonOf(verifyProof(`${weakInput}.${weakSig}`, request(), settings(), now)), /shorter than 2048/)
})

t.test('refuses a jwk with private key material, and a proof signed by another key than its jwk', async (t) => {
  const c = await client('ES256')
  const now = Date.now()
  const privateJwk = await exportJWK(c.privateKey)
  t.ok(privateJwk.d, 'the private JWK has d')
  t.match(reasonOf(verifyProof(await proof(c, {}, { jwk: privateJwk }), request(), settings(), now)), /private key material/)
  const other = await client('ES256')
  t.match(reasonOf(verifyProof(await proof(c, {}, { jwk: other.jwk }), request(), settings(), now)), /signature is invalid/)
  const rsa = await client('RS256')
  t.match(reasonOf(verifyProof(await proof(rsa, {}, { jwk: { kty: 'oct', k: 'c2VjcmV0' } }), request(), settings(), now)), /private key material/)
  t.match(reasonOf(verifyProof(await proof(rsa, {}, { jwk: undefined }), request(), settings(), now)), /no jwk/)
})

t.test('refuses the wrong typ, a crit header, junk and an oversized proof', async (t) => {
  const c = await client('ES256')
  const now = Date.now()
  t.match(reasonOf(verifyProof(await proof(c, {}, { typ: 'JWT' }), request(), settings(), now)), /typ/)
  t.equal(reasonOf(verifyProof(await proof(c, {}, { typ: 'application/DPoP+JWT' }), request(), settings(), now)), 'accepted', 'typ is a media type')
  // jose refuses to sign an unknown crit: signed by hand.
  const es = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const claims = { jti: 'x', htm: 'GET', htu: URL_, iat: Math.floor(now / 1000), ath: ath(TOKEN) }
  const input = `${b64({ alg: 'ES256', typ: 'dpop+jwt', jwk: es.publicKey.export({ format: 'jwk' }), crit: ['exp'], exp: 1 })}.${b64(claims)}`
  const sig = sign('sha256', Buffer.from(input), { key: es.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')
  t.match(reasonOf(verifyProof(`${input}.${sig}`, request(), settings(), now)), /critical/)
  for (const junk of ['', 'a.b', 'a..c', 'not a jwt', 'a.b.c.d', '!!!.###.$$$']) {
    t.match(reasonOf(verifyProof(junk, request(), settings(), now)), /^invalid_dpop_proof/, JSON.stringify(junk))
  }
  const good = await proof(c)
  t.match(reasonOf(verifyProof(good, request(), settings({ maxProofBytes: good.length - 1 }), now)), /larger than/)
  // Another spelling of the same signature (an unused bit set in its last character).
  const last = good.at(-1)!
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const twin = good.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1]
  t.match(reasonOf(verifyProof(twin, request(), settings(), now)), /^invalid_dpop_proof/)
})

t.test('nonces: none or a stale one gets use_dpop_nonce with the nonce to use; the current one passes', async (t) => {
  const nonces = new DpopNonces(Buffer.from('n'.repeat(32)), 5 * 60_000)
  const s = settings({ nonces })
  const c = await client('ES256')
  const now = Date.now()
  const missing = verifyProof(await proof(c), request(), s, now) as Denial
  t.equal(missing.reason, 'use_dpop_nonce')
  t.equal(missing.nonce, nonces.current(now))
  t.equal(reasonOf(verifyProof(await proof(c, { nonce: missing.nonce }), request(), s, now)), 'accepted')
  t.equal(
    reasonOf(verifyProof(await proof(c, { nonce: missing.nonce, iat: Math.floor(now / 1000) + 240 }), request(), s, now + 240_000)),
    'accepted',
    'within the lifetime',
  )
  const stale = verifyProof(await proof(c, { nonce: missing.nonce, iat: Math.floor(now / 1000) + 420 }), request(), s, now + 420_000) as Denial
  t.equal(stale.reason, 'use_dpop_nonce', 'past the lifetime')
  t.not(stale.nonce, missing.nonce)
  const other = new DpopNonces(Buffer.from('m'.repeat(32)), 5 * 60_000)
  t.equal((verifyProof(await proof(c, { nonce: other.current(now) }), request(), s, now) as Denial).reason, 'use_dpop_nonce', 'another secret')
  const later = verifyProof(await proof(c, { nonce: missing.nonce, iat: Math.floor(now / 1000) + 120 }), request(), s, now + 120_000)
  t.notOk(isDenial(later))
  if (!isDenial(later)) t.equal(later.nextNonce, nonces.current(now + 120_000), 'a proof with an older nonce learns the current one')
})

t.test("a client's key is made into a KeyObject once", async (t) => {
  const s = settings()
  const c = await client('ES256')
  for (let i = 0; i < 5; i++) t.equal(reasonOf(verifyProof(await proof(c), request(), s, Date.now())), 'accepted')
  t.equal(s.keys.size, 1)
  const bounded = new ProofKeys(2)
  for (let i = 0; i < 3; i++) verifyProof(await proof(await client('ES256')), request(), settings({ keys: bounded }), Date.now())
  t.equal(bounded.size, 2)
})
