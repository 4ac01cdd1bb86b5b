// Revocation shared through a real redis-server: two gateways in this process, the jwtgate
// command as a child, Redis killed and restarted under them.
import t from 'tap'
import { jwtgate as cli } from '../support/cli.js'
import { bearer, eventually, gateway, get, issuer, tempFile, upstream } from '../support/harness.js'
import { freePort, rdbWith, redisTest, startRedis } from './redis_server.js'
import { ADMIN_ENV, revocationPolicy, revoke, stats, status, token } from './support.js'

const PREFIX = 'test:revocation:'

const redisFields = (url: string, more = '') => `  backend: redis\n  redis: { url: "${url}", key_prefix: "${PREFIX}" }\n${more}`

redisTest(t, 'revoked by jti on one gateway, by subject with the CLI: every gateway refuses within a second', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = revocationPolicy(idp, up, redisFields(redis.url))
  const a = await gateway(t, yaml, ADMIN_ENV)
  const b = await gateway(t, yaml, ADMIN_ENV)
  const stolen = token(idp)
  const other = token(idp)
  for (const g of [a, b]) t.equal(await status(`${g.url}/api/x`, stolen.token), 200, 'accepted before, and now in the token cache')

  const res = await revoke(a.adminUrl!, { jti: stolen.jti })
  t.equal(res.status, 201)
  t.match(res.json, { revoked: 'jti', jti: stolen.jti, kept_until: /^\d{4}-/ })
  t.equal(await status(`${a.url}/api/x`, stolen.token), 401, 'refused at once where it was revoked')
  const tookMs = await eventually('the other gateway refuses it within a second', 1000, async () => (await status(`${b.url}/api/x`, stolen.token)) === 401)
  t.pass(`the other gateway refuses it within a second (took ${tookMs} ms)`)
  const refused = await get(`${b.url}/api/x`, bearer(stolen.token))
  t.equal(refused.json.error, 'revoked')
  t.equal(refused.headers.get('www-authenticate'), 'Bearer realm="jwtgate", error="invalid_token", error_description="token revoked"')
  t.equal(await status(`${b.url}/api/x`, other.token), 200, 'other tokens are unaffected')
  const metrics = await (await fetch(`${b.adminUrl}/metrics`)).text()
  t.match(metrics, /jwtgate_auth_failures_total\{route="\/api\/\*\*",reason="revoked"\} \d/)

  // "Log out everywhere": every token of bob issued before now, revoked from the command line.
  const bob = token(idp, { sub: 'bob' })
  for (const g of [a, b]) t.equal(await status(`${g.url}/api/x`, bob.token), 200)
  const file = tempFile('policy.yaml', yaml)
  const out = await cli(['revoke', '-c', file, '--sub', 'bob'], ADMIN_ENV)
  t.equal(out.code, 0, out.stderr)
  const written = JSON.parse(out.stdout)
  t.match(written, { revoked: 'sub', sub: 'bob', before: Number })
  for (const g of [a, b]) {
    const ms = await eventually("bob's token refused within a second", 1000, async () => (await status(`${g.url}/api/x`, bob.token)) === 401)
    t.pass(`bob's token refused within a second (${ms} ms)`)
  }
  // A token bob gets after the revocation is fine. The revocation's moment is the clock skew (5 s)
  // ahead, past every iat accepted when it was made: a token issued at that moment passes once
  // it is within the skew of now.
  await eventually("the revocation's moment is within the clock skew", 3000, () => Date.now() + 4000 >= written.before * 1000)
  const fresh = token(idp, { sub: 'bob', iat: written.before })
  for (const g of [a, b]) t.equal(await status(`${g.url}/api/x`, fresh.token), 200, 'a token issued after the revocation passes')
  t.match(await stats(b.adminUrl!), { backend: 'redis', state: 'synced', jti: 1, subjects: 1, last_sync: /^\d{4}-/, unavailable_since: null })

  const exp = Math.floor(Date.now() / 1000) + 120
  const byCli = token(idp)
  const jtiOut = await cli(['revoke', '-c', file, '--jti', byCli.jti, '--exp', String(exp)], ADMIN_ENV)
  t.equal(jtiOut.code, 0, jtiOut.stderr)
  t.match(JSON.parse(jtiOut.stdout), { revoked: 'jti', jti: byCli.jti, exp })
  await eventually('the revocation by the CLI applies', 1000, async () => (await status(`${a.url}/api/x`, byCli.token)) === 401)
  const ttl = await redis.client().pttl(`${PREFIX}jti:${byCli.jti}`)
  t.ok(ttl > 100_000 && ttl <= 125_000, `the Redis entry lives until exp + the clock skew (${ttl} ms)`)
})

redisTest(t, 'a restarted gateway still refuses what was revoked', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = revocationPolicy(idp, up, redisFields(redis.url))
  const first = await gateway(t, yaml, ADMIN_ENV)
  const tok = token(idp)
  const carol = token(idp, { sub: 'carol' })
  t.equal((await revoke(first.adminUrl!, { jti: tok.jti })).status, 201)
  t.equal((await revoke(first.adminUrl!, { sub: 'carol' })).status, 201)
  await first.close()

  const second = await gateway(t, yaml, ADMIN_ENV)
  t.equal(await status(`${second.url}/api/x`, tok.token), 401, 'loaded before listening: refused from the first request')
  t.equal(await status(`${second.url}/api/x`, carol.token), 401)
  t.match(await stats(second.adminUrl!), { state: 'synced', jti: 1, subjects: 1 })
})

redisTest(t, 'Redis down: serve_stale keeps the last list, fail_closed refuses; back up: a full resync', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  const stale = await gateway(t, revocationPolicy(idp, up, redisFields(redis.url, '  on_backend_unavailable: serve_stale')), ADMIN_ENV)
  const closed = await gateway(t, revocationPolicy(idp, up, redisFields(redis.url, '  on_backend_unavailable: fail_closed')), ADMIN_ENV)
  const revoked = token(idp)
  const good = token(idp, { sub: 'dave' })
  const later = token(idp, { sub: 'erin' })
  t.equal((await revoke(stale.adminUrl!, { jti: revoked.jti })).status, 201)
  await eventually('the revoked token is refused', 1000, async () => (await status(`${closed.url}/api/x`, revoked.token)) === 401)

  await redis.kill()
  for (const g of [stale, closed]) {
    await eventually('the loss is noticed', 3000, async () => (await stats(g.adminUrl!)).state === 'stale')
  }
  t.equal(await status(`${stale.url}/api/x`, good.token), 200, 'serve_stale: valid tokens still pass')
  t.equal(await status(`${stale.url}/api/x`, revoked.token), 401, 'serve_stale: the last synced list still applies')
  const degraded = await get(`${stale.adminUrl}/readyz`)
  t.equal(degraded.status, 200, 'serve_stale stays ready')
  t.match(degraded.json, { status: 'ready', degraded: [/revocation backend unavailable since .*serving the list synced at/] })
  t.match(await stats(stale.adminUrl!), { state: 'stale', unavailable_since: /^\d{4}-/, last_error: String })

  const refused = await get(`${closed.url}/api/x`, bearer(good.token))
  t.equal(refused.status, 503, 'fail_closed: every token is refused')
  t.equal(refused.json.error, 'revocation_unavailable')
  t.equal(refused.headers.get('retry-after'), '5')
  const notReady = await get(`${closed.adminUrl}/readyz`)
  t.equal(notReady.status, 503)
  t.match(notReady.json, { status: 'not_ready', reasons: [/revocation backend unavailable since .*fail_closed/] })
  t.match(await revoke(stale.adminUrl!, { jti: 'x' }), { status: 503, json: { error: 'revocation_unavailable' } }, 'a revocation cannot be stored meanwhile')
  t.equal(await status(`${stale.url}/once/x`, token(idp).token), 503, 'one-time tokens cannot be checked without Redis')

  // Written straight into Redis while the gateways are cut off: no pub/sub message ever
  // reaches them, only the resync after the reconnect can find it.
  const dir = await rdbWith(t, (c) => c.set(`${PREFIX}jti:${later.jti}`, String(Date.now() + 300_000), 'PX', 300_000))
  await redis.start({ dir })
  for (const g of [stale, closed]) {
    const ms = await eventually('resynced after the reconnect', 5000, async () => (await status(`${g.url}/api/x`, later.token)) === 401)
    t.pass(`resynced after the reconnect: the entry written meanwhile applies (${ms} ms)`)
    // The entry can apply before the store's state says so: the data and the subscriber
    // connections come back one after the other.
    await eventually('synced after the reconnect', 5000, async () => (await stats(g.adminUrl!)).state === 'synced')
    t.match(await stats(g.adminUrl!), { state: 'synced', unavailable_since: null, last_error: null })
    t.same((await get(`${g.adminUrl}/readyz`)).json, { status: 'ready' })
    t.equal(await status(`${g.url}/api/x`, good.token), 200)
    t.equal(await status(`${g.url}/api/x`, revoked.token), 401, 'what was known before is kept, although this Redis lost it')
  }
  // And pub/sub follows again.
  const after = token(idp)
  t.equal((await revoke(stale.adminUrl!, { jti: after.jti })).status, 201)
  await eventually('the revocation made after the reconnect applies', 1000, async () => (await status(`${closed.url}/api/x`, after.token)) === 401)
})

redisTest(t, 'a Redis that stops answering without closing the connection is noticed by the heartbeat', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, redisFields(redis.url, '  on_backend_unavailable: fail_closed')), ADMIN_ENV)
  const tok = token(idp)
  t.equal(await status(`${gw.url}/api/x`, tok.token), 200)
  redis.pause()
  t.teardown(() => redis.resume())
  const ms = await eventually('the paused Redis is noticed', 5000, async () => (await stats(gw.adminUrl!)).state === 'stale')
  t.pass(`noticed after ${ms} ms`)
  t.equal(await status(`${gw.url}/api/x`, tok.token), 503)
  redis.resume()
  await eventually('back once it answers again', 5000, async () => (await status(`${gw.url}/api/x`, tok.token)) === 200)
})

redisTest(t, 'Redis down at start: tokens get 503 and readiness waits until the list is loaded', async (t) => {
  const port = await freePort()
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, revocationPolicy(idp, up, redisFields(`redis://127.0.0.1:${port}`)), ADMIN_ENV)
  const tok = token(idp)
  const res = await get(`${gw.url}/api/x`, bearer(tok.token))
  t.equal(res.status, 503)
  t.equal(res.json.error, 'revocation_unavailable')
  const ready = await get(`${gw.adminUrl}/readyz`)
  t.equal(ready.status, 503)
  t.match(ready.json.reasons, [/revocation list not loaded yet/])
  await startRedis(t, { port })
  await eventually('serves once loaded', 5000, async () => (await status(`${gw.url}/api/x`, tok.token)) === 200)
  t.equal((await get(`${gw.adminUrl}/readyz`)).status, 200)
})

redisTest(t, 'entries expire: from Redis by their TTL, from memory by the lookup and the sweep', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  // No clock skew, so an entry lives exactly until the token's exp; subjects for 2 s.
  const yaml = revocationPolicy(idp, up, redisFields(redis.url, '  max_token_lifetime: 2s')).replace('clock_skew: 5s', 'clock_skew: 0s')
  const gw = await gateway(t, yaml, ADMIN_ENV)
  const client = redis.client()

  const short = token(idp, {}, 2)
  const frank = token(idp, { sub: 'frank' }, 300)
  const exp = Math.floor(Date.now() / 1000) + 2
  t.equal((await revoke(gw.adminUrl!, { jti: short.jti, exp })).status, 201)
  t.equal((await revoke(gw.adminUrl!, { sub: 'frank' })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, short.token), 401)
  t.equal(await status(`${gw.url}/api/x`, frank.token), 401)
  t.match(await stats(gw.adminUrl!), { jti: 1, subjects: 1 })
  const ttl = await client.pttl(`${PREFIX}jti:${short.jti}`)
  t.ok(ttl > 0 && ttl <= 2000, `the jti entry's TTL is the token's remaining lifetime (${ttl} ms)`)

  const gone = await eventually('both entries left memory once expired', 5000, async () => {
    const s = await stats(gw.adminUrl!)
    return s.jti === 0 && s.subjects === 0
  })
  t.pass(`both entries left memory once expired (${gone} ms)`)
  t.equal(await client.exists(`${PREFIX}jti:${short.jti}`, `${PREFIX}sub:frank`), 0, 'and Redis')
  t.equal((await get(`${gw.url}/api/x`, bearer(short.token))).json.error, 'expired', 'the token itself has expired by now')
  t.equal(await status(`${gw.url}/api/x`, frank.token), 200, 'a subject revocation holds for max_token_lifetime only')
})

redisTest(t, 'one-time tokens: of 20 concurrent uses on two gateways exactly one succeeds', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = revocationPolicy(idp, up, redisFields(redis.url))
  const a = await gateway(t, yaml, ADMIN_ENV)
  const b = await gateway(t, yaml, ADMIN_ENV)
  const once = token(idp)
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => get(`${(i % 2 ? a : b).url}/once/reset-password`, bearer(once.token))))
  t.equal(results.filter((r) => r.status === 200).length, 1, 'exactly one use passes')
  const refused = results.filter((r) => r.status !== 200)
  t.equal(refused.length, 19)
  t.ok(
    refused.every((r) => r.status === 401 && r.json.error === 'replayed'),
    'every other one is a replay',
  )
  const key = `${PREFIX}used:${JSON.stringify([idp.url, once.jti])}`
  const ttl = await redis.client().pttl(key)
  t.ok(ttl > 290_000 && ttl <= 306_000, `remembered for the token's lifetime plus the skew (${ttl} ms)`)

  t.equal(await status(`${a.url}/api/x`, once.token), 200, 'routes without replay_protection are unaffected')
  t.equal(await status(`${a.url}/api/x`, once.token), 200)
  const noJti = await get(`${a.url}/once/x`, bearer(idp.sign({ sub: 'alice', aud: 'orders-api' })))
  t.equal(noJti.status, 401)
  t.match(noJti.json, { error: 'invalid_claims', message: 'a one-time token needs a jti claim' })
  const revokedOnce = token(idp)
  t.equal((await revoke(a.adminUrl!, { jti: revokedOnce.jti })).status, 201)
  t.equal((await get(`${a.url}/once/x`, bearer(revokedOnce.token))).json.error, 'revoked', 'a revoked token is refused before it is used up')
})

// A reload to an unreachable Redis stops the new store while it may still be loading ioredis; a
// connection made after that was never closed, and its reconnect attempts kept the process alive
// (the suite's memory.test.ts hung 2 runs in 6 under load). Here a TCP server that drops every
// connection counts the attempts: none may come after stop().
t.test('a redis store stopped while it starts never connects again', async (t) => {
  const { createServer } = await import('node:net')
  const { RedisStore } = await import('../../src/revocation/redis.js')
  const { createLogger } = await import('../../src/log.js')
  let attempts = 0
  const server = createServer((socket) => {
    attempts++
    socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  for (let i = 0; i < 5; i++) {
    const store = new RedisStore(
      { backend: 'redis', failClosed: false, maxTokenLifetimeMs: 60_000, redis: { url: `redis://127.0.0.1:${port}`, keyPrefix: 'jwtgate:', timeoutMs: 200 } },
      createLogger('silent'),
    )
    const starting = store.start()
    // Stopped at a different point of the start each time: before and after ioredis is loaded.
    await new Promise((resolve) => setTimeout(resolve, i * 5))
    await store.stop()
    await starting
    await new Promise((resolve) => setTimeout(resolve, 100))
    const before = attempts
    // ioredis retries within 100-200 ms (retryStrategy): a live client would be seen here.
    await new Promise((resolve) => setTimeout(resolve, 700))
    t.equal(attempts, before, `round ${i}: no connection attempt after stop`)
  }
})

redisTest(t, 'issuer-scoped entries: their own keys, followed by the other replicas; old keys apply to every issuer', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  const idp = await issuer(t)
  const up = await upstream(t)
  const legacy = token(idp, { sub: 'legacy' })
  // Written in the layout from before entries had an issuer: read as every issuer's.
  await client.set(`${PREFIX}jti:${legacy.jti}`, String(Date.now() + 60_000), 'PX', 60_000)
  const yaml = revocationPolicy(idp, up, redisFields(redis.url))
  const a = await gateway(t, yaml, ADMIN_ENV)
  const b = await gateway(t, yaml, ADMIN_ENV)
  t.equal(await status(`${b.url}/api/x`, legacy.token), 401, 'an old jti: key applies to every issuer')
  const mine = token(idp, { sub: 'hank' })
  const elsewhere = 'https://another-idp.example.com/'
  t.equal((await revoke(a.adminUrl!, { sub: 'hank', iss: elsewhere })).status, 201)
  t.equal((await revoke(a.adminUrl!, { jti: mine.jti, iss: idp.url })).status, 201)
  t.ok(await client.exists(`${PREFIX}iss-sub:${JSON.stringify([elsewhere, 'hank'])}`), 'iss-sub:["iss","sub"]')
  t.ok(await client.exists(`${PREFIX}iss-jti:${JSON.stringify([idp.url, mine.jti])}`), 'iss-jti:["iss","jti"]')
  await eventually('the other replica follows the scoped jti', 1000, async () => (await status(`${b.url}/api/x`, mine.token)) === 401)
  t.equal(await status(`${b.url}/api/x`, token(idp, { sub: 'hank' }).token), 200, "another issuer's hank is another person")
  const c = await gateway(t, yaml, ADMIN_ENV)
  t.equal(await status(`${c.url}/api/x`, mine.token), 401, 'a replica started later loads the scoped keys')
  t.match(await stats(c.adminUrl!), { jti: 2, subjects: 1 })
})
