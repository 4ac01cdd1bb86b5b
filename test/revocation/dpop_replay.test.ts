// Used DPoP proofs shared through the revocation backend's Redis: two `jwtgate serve` processes
// behind one name (as behind a load balancer) refuse a proof the other accepted; with Redis
// gone, fail_closed refuses proofs and serve_stale remembers them in each process.
import t from 'tap'
import { servePort as serve } from '../support/cli.js'
import { dpopClient } from '../support/dpop.js'
import { eventually, issuer, rawGet, tempFile, upstream } from '../support/harness.js'
import { createLogger } from '../../src/log.js'
import { RedisStore } from '../../src/revocation/redis.js'
import { redisTest, startRedis } from './redis_server.js'

const HOST = 'api.example'

function replayPolicy(idpUrl: string, jwksUri: string, upstreamUrl: string, redisUrl: string, unavailable: string): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: false
issuers:
  idp:
    issuer: ${idpUrl}
    jwks_uri: ${jwksUri}
    audiences: [orders-api]
    algorithms: [RS256]
    binding: { method: dpop, required: true }
upstreams:
  orders: { url: "${upstreamUrl}", timeout: 2s }
revocation:
  backend: redis
  on_backend_unavailable: ${unavailable}
  redis: { url: "${redisUrl}", key_prefix: "test:dpop:", timeout: 300ms }
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
`
}

redisTest(t, 'a proof used on one gateway process is refused by another sharing the Redis', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile('policy.yaml', replayPolicy(idp.url, idp.jwksUri, up.url, redis.url, 'fail_closed'))
  const [a, b] = await Promise.all([serve(t, file), serve(t, file)])
  const client = await dpopClient()
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', cnf: { jkt: client.jkt } })
  const send = async (port: number, proof: string) => rawGet(port, '/api/orders', { Host: HOST, Authorization: `DPoP ${token}`, DPoP: proof })
  const proof = await client.proof('GET', `http://${HOST}/api/orders`, token)
  await eventually(
    'the first gateway is serving',
    10_000,
    async () => (await send(a, await client.proof('GET', `http://${HOST}/api/orders`, token))).status === 200,
  )
  t.equal((await send(a, proof)).status, 200, 'first use, on a')
  const replayed = await send(b, proof)
  t.equal(replayed.status, 401, 'the same proof, on b')
  t.match(replayed.body, /"error":"proof_replayed"/)
  t.equal((await send(a, proof)).status, 401, 'and on a again')
  t.equal((await send(b, await client.proof('GET', `http://${HOST}/api/orders`, token))).status, 200, 'a fresh proof on b')
  t.ok((await redis.client().keys('test:dpop:dpop:*')).length >= 3, 'the proofs are keys in Redis')

  // Redis gone, fail_closed: no proof can be recorded, so none is accepted (the revocation list,
  // checked first, says so already).
  await redis.kill()
  const refused = await send(a, await client.proof('GET', `http://${HOST}/api/orders`, token))
  t.equal(refused.status, 503)
  t.match(refused.body, /"error":"(revocation_unavailable|proof_replay_unavailable)"/)
})

t.test('the Redis replay cache while Redis is not connected: fail_closed refuses, serve_stale remembers locally', async (t) => {
  const settings = (failClosed: boolean) => ({
    backend: 'redis' as const,
    failClosed,
    maxTokenLifetimeMs: 60_000,
    redis: { url: 'redis://127.0.0.1:1', keyPrefix: 'x:', timeoutMs: 100 },
  })
  const closed = new RedisStore(settings(true), createLogger('silent')).proofReplay(10)
  t.match(closed.firstUse('k:1', 1000, Date.now()), { status: 503, reason: 'proof_replay_unavailable' })
  const stale = new RedisStore(settings(false), createLogger('silent')).proofReplay(10)
  t.equal(stale.firstUse('k:1', 1000, Date.now()), true)
  t.equal(stale.firstUse('k:1', 1000, Date.now()), false)
})

redisTest(t, 'serve_stale: with Redis gone each process still refuses proofs it has seen', async (t) => {
  const redis = await startRedis(t)
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile('policy.yaml', replayPolicy(idp.url, idp.jwksUri, up.url, redis.url, 'serve_stale'))
  const port = await serve(t, file)
  const client = await dpopClient()
  const token = idp.sign({ sub: 'alice', aud: 'orders-api', cnf: { jkt: client.jkt } })
  const send = async (proof: string) => rawGet(port, '/api/orders', { Host: HOST, Authorization: `DPoP ${token}`, DPoP: proof })
  await eventually('the gateway is serving', 10_000, async () => (await send(await client.proof('GET', `http://${HOST}/api/orders`, token))).status === 200)
  await redis.kill()
  const proof = await client.proof('GET', `http://${HOST}/api/orders`, token)
  t.equal((await send(proof)).status, 200)
  const again = await send(proof)
  t.equal(again.status, 401)
  t.match(again.body, /"error":"proof_replayed"/)
})
