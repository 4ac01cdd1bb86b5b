// The memory backend end to end (no Redis needed): the admin API, the token cache never
// serving a revoked token, subject revocation by iat, one-time tokens, /config redaction.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { freePort } from './redis_server.js'
import { API_ROUTE, bearer, gateway, get, issuer, policy, tempFile, upstream } from '../support/harness.js'
import { ADMIN_ENV, ADMIN_TOKEN, revocationPolicy, revoke, stats, status, token } from './support.js'

const MEMORY = '  backend: memory'

t.test('POST /revocations: bearer token required, body checked, revocation applied at once', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  const admin = gw.adminUrl!
  const tok = token(idp)
  t.equal(await status(`${gw.url}/api/x`, tok.token), 200)

  const none = await revoke(admin, { jti: tok.jti }, null)
  t.equal(none.status, 401)
  t.equal(none.json.error, 'unauthorized')
  t.equal((await revoke(admin, { jti: tok.jti }, 'wrong-token-of-about-the-same-size!')).status, 401)
  t.equal((await revoke(admin, { jti: tok.jti }, `${ADMIN_TOKEN}x`)).status, 401, 'a longer token with the right prefix is wrong too')
  const basic = await fetch(`${admin}/revocations`, {
    method: 'POST',
    headers: { authorization: `Basic ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: '{}',
  })
  t.equal(basic.status, 401, 'only the Bearer scheme')
  t.equal(await status(`${gw.url}/api/x`, tok.token), 200, 'nothing was revoked by those')

  for (const [body, message] of [
    [{}, /give \{"jti"/],
    [[tok.jti], /must be a JSON object/],
    [{ jti: '' }, /jti must be a non-empty string/],
    [{ jti: true }, /jti must be a non-empty string/],
    [{ jti: 'a', iss: '' }, /iss must be the tokens' issuer/],
    [{ sub: 'a', iss: 5 }, /iss must be the tokens' issuer/],
    [{ jti: 'a', exp: 'soon' }, /exp must be a positive number/],
    [{ jti: 'a', before: 5 }, /unknown field "before"/],
    [{ sub: 'a', exp: 5 }, /unknown field "exp"/],
    [{ sub: 'a', before: -1 }, /before must be a positive number/],
  ] as const) {
    const res = await revoke(admin, body)
    t.equal(res.status, 400, JSON.stringify(body))
    t.match(res.json, { error: 'bad_request', message })
  }

  const ok = await revoke(admin, { jti: tok.jti })
  t.equal(ok.status, 201)
  t.match(ok.json, { revoked: 'jti', jti: tok.jti })
  const refused = await get(`${gw.url}/api/x`, bearer(tok.token))
  t.equal(refused.status, 401, 'the cached token is refused: the cache never serves a revoked token')
  t.equal(refused.json.error, 'revoked')
  t.match(refused.headers.get('www-authenticate'), 'error_description="token revoked"')
  t.match(
    gw.logs.lines.find((l) => l.msg === 'token revoked'),
    { revoked: 'jti', id: tok.jti },
  )
  t.match(await stats(admin), { backend: 'memory', state: 'synced', on_backend_unavailable: 'serve_stale', jti: 1, subjects: 0 })
  t.equal((await get(`${admin}/readyz`)).status, 200)
})

t.test('a subject revocation covers tokens issued before it, and tokens without iat', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  const now = Math.floor(Date.now() / 1000)
  const old = token(idp, { sub: 'bob', iat: now - 100 })
  const recent = token(idp, { sub: 'bob', iat: now - 10 })
  const noIat = token(idp, { sub: 'bob', iat: undefined })
  const other = token(idp, { sub: 'carol', iat: now - 100 })
  t.equal((await revoke(gw.adminUrl!, { sub: 'bob', before: now - 50 })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, old.token), 401, 'issued before')
  t.equal(await status(`${gw.url}/api/x`, recent.token), 200, 'issued after')
  t.equal(await status(`${gw.url}/api/x`, noIat.token), 401, 'no iat: cannot show it is newer')
  t.equal(await status(`${gw.url}/api/x`, other.token), 200, 'another subject')
  // A later revocation moves the moment forward; an earlier one never moves it back.
  t.equal((await revoke(gw.adminUrl!, { sub: 'bob', before: now - 5 })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, recent.token), 401)
  t.equal((await revoke(gw.adminUrl!, { sub: 'bob', before: now - 500 })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, recent.token), 401)
})

t.test('POST /revocations is off without admin_token; stats only with a revocation section', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const noToken = await gateway(t, policy({ issuer: idp, upstream: up, routes: API_ROUTE, extra: 'revocation:\n  backend: memory' }))
  const off = await revoke(noToken.adminUrl!, { jti: 'a' })
  t.equal(off.status, 404)
  t.match(off.json.message, /off; set revocation.admin_token/)
  t.equal((await get(`${noToken.adminUrl}/revocations/stats`)).status, 200)
  const plain = await gateway(t, policy({ issuer: idp, upstream: up, routes: API_ROUTE }))
  t.equal((await revoke(plain.adminUrl!, { jti: 'a' })).status, 404)
  t.equal((await get(`${plain.adminUrl}/revocations/stats`)).status, 404)
  t.equal(await status(`${plain.url}/api/x`, token(idp).token), 200)
})

t.test('the admin token never shows in /config or the log', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  await revoke(gw.adminUrl!, { jti: 'x' })
  const config = await (await fetch(`${gw.adminUrl}/config`)).text()
  t.notOk(config.includes(ADMIN_TOKEN))
  t.equal(JSON.parse(config).policy.revocation.admin_token, '[redacted]')
  t.notOk(gw.logs.text.includes(ADMIN_TOKEN))
})

t.test('one-time tokens in one process: of 20 concurrent uses exactly one succeeds', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  const once = token(idp)
  const results = await Promise.all(Array.from({ length: 20 }, () => get(`${gw.url}/once/x`, bearer(once.token))))
  t.equal(results.filter((r) => r.status === 200).length, 1)
  t.equal(results.filter((r) => r.status === 401 && r.json.error === 'replayed').length, 19)
  t.equal(up.received.filter((r) => r.url.startsWith('/once/')).length, 1, 'only one reached the upstream')
})

t.test('a reload keeps the store (and its revocations) when its settings are unchanged', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  const tok = token(idp)
  t.equal((await revoke(gw.adminUrl!, { jti: tok.jti })).status, 201)
  const store = gw.gateway.policy.revocation!.store
  t.equal(await gw.reload(), true)
  t.equal(gw.gateway.policy.revocation!.store, store, 'the same store')
  t.equal(await status(`${gw.url}/api/x`, tok.token), 401)
})

t.test('a reload to another backend: loaded before it takes over, or the reload fails', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  const tok = token(idp)
  t.equal((await revoke(gw.adminUrl!, { jti: tok.jti })).status, 201)
  const memoryStore = gw.gateway.policy.revocation!.store

  // Nothing listens on this port: the new list cannot be loaded.
  const port = await freePort()
  writeFileSync(gw.gateway.policy.file, revocationPolicy(idp, up, `  backend: redis\n  redis: { url: "redis://127.0.0.1:${port}", timeout: 200ms }`))
  t.equal(await gw.reload(), false, 'refused')
  t.equal(gw.gateway.policy.revocation!.store, memoryStore, 'the running list stays')
  t.equal(await status(`${gw.url}/api/x`, tok.token), 401)
  t.match(
    gw.logs.lines.find((l) => l.msg === 'policy reload failed: the new revocation list could not be loaded; keeping the loaded policy'),
    { error: /ECONNREFUSED/ },
  )

  const list = tempFile('revoked.yaml', '- { sub: someone-else }\n')
  writeFileSync(gw.gateway.policy.file, revocationPolicy(idp, up, `  backend: file\n  file: { path: "${list}" }`))
  t.equal(await gw.reload(), true)
  t.match(await stats(gw.adminUrl!), { backend: 'file', state: 'synced', subjects: 1 })
  t.equal(await status(`${gw.url}/api/x`, tok.token), 200, 'the file is the list now')
  t.equal(memoryStore.currentState, 'stopped', 'the old store was stopped')
})

t.test('a reload that changes a revocation setting carries the memory backend’s revocations over', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, `${MEMORY}\n  max_token_lifetime: 24h`), ADMIN_ENV)
  const now = Math.floor(Date.now() / 1000)
  const byJti = token(idp)
  const bySub = token(idp, { sub: 'dave', iat: now - 60 })
  const once = token(idp)
  t.equal((await revoke(gw.adminUrl!, { jti: byJti.jti })).status, 201)
  t.equal((await revoke(gw.adminUrl!, { sub: 'dave' })).status, 201)
  t.equal(await status(`${gw.url}/once/x`, once.token), 200, 'a one-time token, used')
  const before = gw.gateway.policy.revocation!.store

  writeFileSync(gw.gateway.policy.file, revocationPolicy(idp, up, `${MEMORY}\n  max_token_lifetime: 12h`))
  t.equal(await gw.reload(), true)
  const after = gw.gateway.policy.revocation!.store
  t.not(after, before, 'other settings: another store')
  t.equal(after.settings.maxTokenLifetimeMs, 12 * 3_600_000)
  t.equal(await status(`${gw.url}/api/x`, byJti.token), 401, 'the revoked jti is still refused')
  t.equal(await status(`${gw.url}/api/x`, bySub.token), 401, 'the revoked subject is still refused')
  t.equal(await status(`${gw.url}/once/x`, once.token), 401, 'the used one-time token stays used')
  t.match(await stats(gw.adminUrl!), { backend: 'memory', state: 'synced', jti: 1, subjects: 1 })
  const subject = after.entries().find((e) => e.kind === 'sub')!
  t.ok(subject.expiresAt <= Date.now() + 12 * 3_600_000 + 5000 + 7000, 'the subject entry re-evaluated: kept for the new max_token_lifetime')
  t.match(
    gw.logs.lines.find((l) => l.msg === 'revocations carried over into the reloaded memory store'),
    { carried: 2, re_evaluated: 1, dropped: 0 },
  )
  // A revocation the replaced store completes after the hand-over reaches the new one too.
  const late = token(idp)
  await before.revokeJti(late.jti)
  t.equal(await status(`${gw.url}/api/x`, late.token), 401)
})

t.test('a reload that leaves the memory backend says loudly how many revocations it drops, and counts them', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  t.equal((await revoke(gw.adminUrl!, { jti: 'gone-1' })).status, 201)
  t.equal((await revoke(gw.adminUrl!, { sub: 'gone-2' })).status, 201)
  const list = tempFile('revoked.yaml', '')
  writeFileSync(gw.gateway.policy.file, revocationPolicy(idp, up, `  backend: file\n  file: { path: "${list}" }`))
  t.equal(await gw.reload(), true)
  t.match(
    gw.logs.lines.find((l) => l.level === 50 && /^policy reload drops 2 revocations of the memory backend/.test(String(l.msg))),
    { dropped: 2, from: 'memory', to: 'file' },
  )
  t.match(await (await fetch(`${gw.adminUrl}/metrics`)).text(), /jwtgate_revocations_dropped_total 2\n/)
})

t.test('a numeric jti is revocable: by its decimal form, given as a number or a string', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  const aud = 'orders-api'
  const n42 = idp.sign({ sub: 'alice', aud, jti: 42 })
  const n43 = idp.sign({ sub: 'alice', aud, jti: 43 })
  const n44 = idp.sign({ sub: 'alice', aud, jti: 44 })
  t.equal(await status(`${gw.url}/api/x`, n42), 200)
  const asNumber = await revoke(gw.adminUrl!, { jti: 42 })
  t.equal(asNumber.status, 201)
  t.match(asNumber.json, { revoked: 'jti', jti: '42', iss: '*' })
  t.equal(await status(`${gw.url}/api/x`, n42), 401, 'the token with jti 42 is refused')
  t.equal((await revoke(gw.adminUrl!, { jti: '43' })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, n43), 401, 'revoked as the string "43"')
  t.equal(await status(`${gw.url}/api/x`, n44), 200, 'another number passes')
})

t.test('a subject revocation without before covers tokens issued up to the clock skew ahead', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  // The harness issuer's clock_skew is 5s: a token with iat 4s ahead is accepted.
  const ahead = token(idp, { sub: 'erin', iat: Math.floor(Date.now() / 1000) + 4 })
  t.equal(await status(`${gw.url}/api/x`, ahead.token), 200, 'accepted before the revocation')
  const res = await revoke(gw.adminUrl!, { sub: 'erin' })
  t.equal(res.status, 201)
  t.ok(res.json.before >= Math.floor(Date.now() / 1000) + 5, 'before is now + the largest clock_skew')
  t.equal(await status(`${gw.url}/api/x`, ahead.token), 401, 'a token minted by an issuer whose clock is ahead is covered')
})

t.test('jti and sub entries scoped to one issuer; "*" (or no iss) for every issuer', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, MEMORY), ADMIN_ENV)
  const alice = token(idp, { sub: 'alice' })
  const frank = token(idp, { sub: 'frank' })
  const gina = token(idp, { sub: 'gina' })
  const elsewhere = 'https://another-idp.example.com/'
  t.match((await revoke(gw.adminUrl!, { jti: alice.jti, iss: elsewhere })).json, { revoked: 'jti', iss: elsewhere })
  t.equal((await revoke(gw.adminUrl!, { sub: 'frank', iss: elsewhere })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, alice.token), 200, "another issuer's jti entry does not touch this issuer's token")
  t.equal(await status(`${gw.url}/api/x`, frank.token), 200, "another issuer's subject is another person")
  t.equal((await revoke(gw.adminUrl!, { jti: alice.jti, iss: idp.url })).status, 201)
  t.equal((await revoke(gw.adminUrl!, { sub: 'frank', iss: idp.url })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, alice.token), 401, 'scoped to the token issuer: refused')
  t.equal(await status(`${gw.url}/api/x`, frank.token), 401)
  t.match((await revoke(gw.adminUrl!, { sub: 'gina', iss: '*' })).json, { revoked: 'sub', iss: '*' })
  t.equal(await status(`${gw.url}/api/x`, gina.token), 401, 'the all-issuers form')
  t.match(await stats(gw.adminUrl!), { jti: 2, subjects: 3 })
})
