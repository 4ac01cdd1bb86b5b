// Rotating an HS256 issuer's shared secret (issue 16 item 14): `secrets`, the newest first, each
// tried by kid when the token names one, else in order; the old one removed by a reload.
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { createSigner } from 'fast-jwt'
import { parsePolicySource } from '../../src/policy/load.js'
import { filesReadAtLoad } from '../../src/policy/policy_files.js'
import { startGateway } from '../../src/server.js'
import { bearer, get, LogCapture, policyProblems, tempFile, upstream } from '../support/harness.js'

const NEW = 'the-new-secret-of-at-least-32-bytes-0001'
const OLD = 'the-old-secret-of-at-least-32-bytes-0002'
const OTHER = 'a-secret-the-issuer-never-had-32-bytes-03'

const now = () => Math.floor(Date.now() / 1000)
function sign(secret: string, kid?: string, extra: Record<string, unknown> = {}): string {
  return createSigner({ key: secret, algorithm: 'HS256', noTimestamp: true, ...(kid ? { kid } : {}) })({
    iss: 'internal-auth',
    aud: 'orders-api',
    sub: 'svc',
    exp: now() + 60,
    ...extra,
  })
}

function policy(upUrl: string, secrets: string): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
issuers:
  internal:
    issuer: internal-auth
    audiences: [orders-api]
    algorithms: [HS256]
    secrets:
${secrets}
upstreams:
  orders: { url: "${upUrl}" }
identity_headers: { x-user-id: sub }
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [internal] } }
`
}

t.test('during a rotation tokens of the old and the new secret pass; after the reload without the old, its tokens are 401', async (t) => {
  const up = await upstream(t)
  const both = policy(
    up.url,
    `      - { kid: k2, secret: "\${NEW_SECRET}" }
      - { kid: k1, secret_file: old.key }`,
  )
  const file = tempFile('policy.yaml', both)
  writeFileSync(file.replace(/policy\.yaml$/, 'old.key'), `${OLD}\n`)
  const gw = await startGateway({
    policyFile: file,
    env: { ...process.env, NEW_SECRET: NEW },
    logDestination: new LogCapture(),
    listen: { port: 0 },
    admin: { port: 0 },
  })
  t.teardown(() => gw.close())
  const call = async (token: string) => {
    const res = await get(`${gw.url}/api/x`, bearer(token))
    return [res.status, res.json?.error ?? 'ok']
  }
  const oldNoKid = sign(OLD, undefined, { n: 1 })
  for (const [what, token] of [
    ['the new secret, its kid', sign(NEW, 'k2')],
    ['the old secret, its kid', sign(OLD, 'k1')],
    ['the new secret, no kid', sign(NEW)],
    ['the old secret, no kid (cached now)', oldNoKid],
  ] as const) {
    t.same(await call(token), [200, 'ok'], what)
  }
  t.same(await call(sign(OLD, 'k2')), [401, 'bad_signature'], 'a kid picks its secret only: the old secret under the new kid')
  t.same(await call(sign(NEW, 'k3')), [401, 'unknown_kid'], 'a kid no secret has, when every secret has a kid')
  t.same(await call(sign(OTHER)), [401, 'bad_signature'], 'no secret signed it')
  t.same(await call(sign(OTHER, undefined, { exp: now() - 3600 })), [401, 'bad_signature'], 'an expired token of no secret: the signature decides first')
  t.same(await call(sign(OLD, undefined, { exp: now() - 3600 })), [401, 'expired'], 'the old secret signed it, but it expired')

  t.ok(
    filesReadAtLoad(file, parsePolicySource(file, readFileSync(file, 'utf8'), { NEW_SECRET: NEW }).document).includes(path.join(path.dirname(file), 'old.key')),
    'a change to a secret file of the list reloads the policy',
  )

  const config = await get(`${gw.adminUrl}/config`)
  const shown = JSON.stringify(config.json)
  t.same(config.json.policy.issuers.internal.secrets, [
    { kid: 'k2', secret: '[redacted]' },
    { kid: 'k1', secret_file: 'old.key' },
  ])
  t.notOk(shown.includes(NEW) || shown.includes(OLD), '/config shows no secret of the list')

  writeFileSync(file, policy(up.url, '      - { kid: k2, secret: "${NEW_SECRET}" }'))
  t.equal(await gw.reload(), true)
  t.same(await call(oldNoKid), [401, 'bad_signature'], 'a token of the removed secret, verified and cached before the reload, is refused')
  t.same(await call(sign(OLD)), [401, 'bad_signature'], 'a fresh one too')
  t.same(await call(sign(OLD, 'k1')), [401, 'unknown_kid'], "its kid is no longer any secret's, and every secret left has a kid")
  t.same(await call(sign(NEW, 'k2')), [200, 'ok'], 'the new secret still verifies')
})

t.test('a secret without kid also checks tokens whose kid no secret has (a single secret: as before)', async (t) => {
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policy(up.url, `      - { kid: k2, secret: "${NEW}" }\n      - { secret: "${OLD}" }`))
  const gw = await startGateway({ policyFile: file, logDestination: new LogCapture(), listen: { port: 0 }, admin: false })
  t.teardown(() => gw.close())
  t.equal((await get(`${gw.url}/api/x`, bearer(sign(OLD, 'anything')))).status, 200)
  t.equal((await get(`${gw.url}/api/x`, bearer(sign(NEW, 'anything')))).status, 401, 'the kid-bound secret only for its kid')
  t.equal((await get(`${gw.url}/api/x`, bearer(sign(NEW)))).status, 200, 'no kid: every secret')
})

t.test('secrets: at most 4, each long enough, one of secret or secret_file, unique kids, and not beside secret', async (t) => {
  const base = (secrets: string, extra = '') => `version: 1
listen: { host: 127.0.0.1, port: 0 }
issuers:
  internal:
    issuer: internal-auth
    audiences: [orders-api]
    algorithms: [HS256]
${extra}    secrets:
${secrets}
upstreams:
  orders: { url: "http://127.0.0.1:1" }
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [internal] } }
`
  const item = (i: number, kid = `k${i}`) => `      - { kid: ${kid}, secret: "${NEW}${i}" }`
  t.same(policyProblems(base([1, 2, 3, 4].map((i) => item(i)).join('\n'))), [], 'four')
  t.match(policyProblems(base([1, 2, 3, 4, 5].map((i) => item(i)).join('\n'))), [/secrets.*(at most|more than) 4/i], 'five are refused at load')
  t.match(
    policyProblems(base(`${item(1)}\n      - { secret: "short" }`))[0],
    /^10:\d+ .*at least 32 bytes for HS256 \(RFC 7518 §3\.2\); it has 5/,
    'each secret is checked for length, at its place',
  )
  t.match(policyProblems(base(`${item(1, 'same')}\n${item(2, 'same')}`)), [/kid "same" is already the kid of another secret/])
  t.match(policyProblems(base('      - { kid: k1 }')), [/exactly one of secret or secret_file/])
  t.match(policyProblems(base(item(1), `    secret: "${OLD}"\n`)), [/exactly one key source.*\(found secret, secrets\)/])
})
