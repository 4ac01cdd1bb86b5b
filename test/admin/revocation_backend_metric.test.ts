// jwtgate_revocation_backend_up, which the JwtgateRevocationBackendDown alert reads: 1 while the
// revocation list is synced, 0 while its backend cannot be reached, absent without revocation:.
import t from 'tap'
import { freePort } from '../revocation/redis_server.js'
import { ADMIN_ENV, revocationPolicy } from '../revocation/support.js'
import { API_ROUTE, gateway, issuer, policy, upstream } from '../support/harness.js'

async function gauge(adminUrl: string): Promise<string | undefined> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  return /^jwtgate_revocation_backend_up\{backend="\w+"\} (\d)$/m.exec(text)?.[1]
}

t.test('1 with a synced list, 0 with a backend away, absent without revocation', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const memory = await gateway(t, revocationPolicy(idp, up, '  backend: memory'), ADMIN_ENV)
  t.equal(await gauge(memory.adminUrl!), '1', 'memory backend: synced')

  const away = `  backend: redis\n  redis: { url: "redis://127.0.0.1:${await freePort()}", timeout: 200ms }`
  const redis = await gateway(t, revocationPolicy(idp, up, away), ADMIN_ENV)
  t.equal(await gauge(redis.adminUrl!), '0', 'redis not reachable: 0')

  const none = await gateway(t, policy({ issuer: idp, upstream: up, routes: API_ROUTE }))
  t.equal(await gauge(none.adminUrl!), undefined, 'no revocation: no series')
})
