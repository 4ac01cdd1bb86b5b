// The `revocation:` section and `replay_protection`: checked with file:line:col problems,
// compiled into one store per policy, kept across reloads while its settings are unchanged.
import t from 'tap'
import path from 'node:path'
import { createLogger } from '../../src/log.js'
import { compilePolicy, type CompiledPolicy } from '../../src/policy/compile.js'
import { parsePolicySource } from '../../src/policy/load.js'
import { PolicyError, formatProblem } from '../../src/policy/problems.js'
import { FileStore } from '../../src/revocation/file.js'
import { MemoryStore } from '../../src/revocation/memory.js'
import { RedisStore } from '../../src/revocation/redis.js'
import { commitRevocation } from '../../src/revocation/config.js'
import { tempFile } from '../support/harness.js'

const silent = createLogger('silent')

const BASE = `version: 1
listen: { host: 127.0.0.1, port: 8080 }
issuers:
  idp:
    issuer: https://idp.example.com/
    jwks_uri: https://idp.example.com/.well-known/jwks.json
    audiences: [orders-api]
    algorithms: [RS256]
    clock_skew: 45s
  other:
    issuer: other
    secret: "${'s'.repeat(32)}"
    audiences: [orders-api]
    algorithms: [HS256]
    clock_skew: 10s
upstreams:
  orders: { url: "http://127.0.0.1:3001" }
routes:
  - path: /api/**
    upstream: orders
    auth: { issuers: [idp] }
`

function compile(yaml: string, env: Record<string, string> = {}, previous?: CompiledPolicy, file = 'policy.yaml'): CompiledPolicy {
  const policy = compilePolicy(parsePolicySource(file, yaml, env), silent, previous)
  t.teardown(() => {
    for (const issuer of policy.issuers.values()) issuer.stop()
  })
  return policy
}

function problems(yaml: string, env: Record<string, string> = {}): string[] {
  try {
    compile(yaml, env)
    return []
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    return err.problems.map(formatProblem)
  }
}

const withRevocation = (section: string) => `${BASE}revocation:\n${section}\n`

t.test('each backend compiles into its store, exposed to authentication too', async (t) => {
  const memory = compile(withRevocation('  backend: memory'))
  t.type(memory.revocation!.store, MemoryStore)
  t.equal(memory.auth.revocation, memory.revocation!.store)
  t.equal(memory.revocation!.adminTokenDigest, null, 'no admin token: POST /revocations off')
  t.equal(memory.revocation!.store.marginMs, 45_000, 'kept for the largest clock skew past exp')
  t.match(memory.revocation!.store.settings, { failClosed: false, maxTokenLifetimeMs: 86_400_000 })

  const file = compile(
    withRevocation('  backend: file\n  file: { path: lists/revoked.yaml }\n  max_token_lifetime: 1h'),
    {},
    undefined,
    '/etc/jwtgate/policy.yaml',
  )
  t.type(file.revocation!.store, FileStore)
  t.same(file.revocation!.store.settings.file, { path: path.resolve('/etc/jwtgate/lists/revoked.yaml') }, 'relative to the policy file')
  t.equal(file.revocation!.store.settings.maxTokenLifetimeMs, 3_600_000)

  const redis = compile(
    withRevocation(
      '  backend: redis\n  on_backend_unavailable: fail_closed\n  redis: { url: "redis://:hunter2-password@10.0.0.1:6379/2" }\n  admin_token: "${T}"',
    ),
    { T: 'a'.repeat(16) },
  )
  t.type(redis.revocation!.store, RedisStore)
  t.match(redis.revocation!.store.settings, {
    failClosed: true,
    redis: { url: 'redis://:hunter2-password@10.0.0.1:6379/2', keyPrefix: 'jwtgate:revocation:', timeoutMs: 1000 },
  })
  t.type(redis.revocation!.adminTokenDigest, Buffer)
  const shown = JSON.stringify(redis.redacted)
  t.notMatch(shown, 'hunter2', 'the redis password is not shown by /config')
  t.notMatch(shown, 'a'.repeat(16), 'nor the admin token')
  t.match(shown, 'redis://[redacted]@10.0.0.1:6379/2')

  const none = compile(BASE)
  t.equal(none.revocation, null)
  t.equal(none.auth.revocation, null)
})

t.test('problems are reported at their place', async (t) => {
  t.same(problems(withRevocation('  backend: redis')), ['policy.yaml:23:12 backend: redis needs redis: { url: … }'])
  t.same(problems(withRevocation('  backend: file')), ['policy.yaml:23:12 backend: file needs file: { path: … }'])
  t.same(problems(withRevocation('  backend: redis\n  redis: { url: "http://x" }')), [
    'policy.yaml:24:17 redis.url must be a redis:// or rediss:// URL, as in redis://127.0.0.1:6379/0',
  ])
  t.same(problems(withRevocation('  backend: memory\n  file: { path: x }')), ['policy.yaml:24:9 file: is only used with backend: file (the backend is memory)'])
  t.same(problems(withRevocation('  backend: memory\n  max_token_lifetime: 0s')), ['policy.yaml:24:23 max_token_lifetime must be more than 0'])
  t.same(problems(withRevocation('  backend: memory\n  admin_token: short')), ['policy.yaml:24:16 the admin token must be at least 16 bytes; it has 5'])
  t.same(problems(withRevocation('  backend: memory\n  admin_token: "${T}"')), ['policy.yaml:24:16 environment variable T is not set'])
  t.same(problems(withRevocation('  backend: memory\n  admin_token_file: /nonexistent/token')), [
    'policy.yaml:24:21 cannot read admin_token_file /nonexistent/token: ENOENT',
  ])
  t.same(problems(withRevocation(`  backend: memory\n  admin_token: "${'x'.repeat(20)}"\n  admin_token_file: /x`)), [
    'policy.yaml:25:21 give admin_token or admin_token_file, not both',
  ])
  t.same(problems(withRevocation('  backend: memory\n  on_backend_unavailable: fail_open')), [
    'policy.yaml:24:27 revocation.on_backend_unavailable must be one of: fail_closed, serve_stale',
  ])
  t.same(problems(withRevocation('  backend: memory\n  admin_tokn: x')), [
    'policy.yaml:24:3 unknown field "admin_tokn" in revocation (did you mean "admin_token"?)',
  ])
  t.same(problems(withRevocation('  backend: postgres')), ['policy.yaml:23:12 revocation.backend must be one of: memory, file, redis'])

  const replayOnOpenRoute = BASE + '  - { path: /reset, upstream: orders, auth: none, replay_protection: true }\n'
  t.same(problems(replayOnOpenRoute), ['policy.yaml:22:70 replay_protection needs a token: the route has auth: none'])
  const replayWithout = BASE + '  - { path: /reset, upstream: orders, auth: { issuers: [idp] }, replay_protection: true }\n'
  t.same(problems(replayWithout), ['policy.yaml:22:84 replay_protection needs a revocation: section, whose backend records the used tokens'])
  const replay = compile(`${replayWithout}revocation:\n  backend: memory\n`)
  t.equal(replay.routes.match('GET', '', '/reset')!.value.auth!.replayProtection, true)
  t.notOk(replay.routes.match('GET', '', '/api/x')!.value.auth!.replayProtection, 'off elsewhere')
})

t.test('the admin token from a file', async (t) => {
  const file = tempFile('token', 'a-token-from-a-secret-file\n')
  const policy = compile(withRevocation(`  backend: memory\n  admin_token_file: ${file}`))
  t.type(policy.revocation!.adminTokenDigest, Buffer)
})

t.test('a rejected reload leaves the running store as it was', async (t) => {
  const yaml = withRevocation('  backend: memory')
  const running = compile(yaml)
  t.equal(running.revocation!.store.marginMs, 45_000)
  const rejected = yaml.replace('clock_skew: 45s', 'clock_skew: 5m').replace('upstream: orders', 'upstream: nowhere')
  t.throws(() => compile(rejected, {}, running), PolicyError)
  t.equal(running.revocation!.store.marginMs, 45_000, 'a policy that does not compile changes nothing')
  // Compiled, then refused later (its new issuer or store could not start): never committed.
  const uncommitted = compile(yaml.replace('clock_skew: 45s', 'clock_skew: 5m'), {}, running)
  t.equal(uncommitted.revocation!.store, running.revocation!.store, 'the store is shared')
  t.equal(running.revocation!.store.marginMs, 45_000, 'the margin of a store the running policy shares is unchanged')
})

t.test('a reload keeps the store while its settings are unchanged', async (t) => {
  const yaml = withRevocation('  backend: redis\n  redis: { url: "redis://127.0.0.1:1" }\n  admin_token: "${T}"')
  const first = compile(yaml, { T: 'a'.repeat(16) })
  const same = compile(yaml.replace('/api/**', '/v2/**'), { T: 'b'.repeat(16) }, first)
  t.equal(same.revocation!.store, first.revocation!.store, 'routes and the admin token are not store settings')
  t.not(same.revocation!.adminTokenDigest!.equals(first.revocation!.adminTokenDigest!), true, 'the new token applies')
  const skew = compile(yaml.replace('clock_skew: 45s', 'clock_skew: 2m'), { T: 'a'.repeat(16) }, same)
  t.equal(skew.revocation!.store, first.revocation!.store)
  t.equal(skew.revocation!.marginMs, 120_000, 'the margin follows the issuers')
  t.equal(skew.revocation!.store.marginMs, 45_000, 'the running store keeps its margin until the reload commits')
  commitRevocation(skew.revocation)
  t.equal(skew.revocation!.store.marginMs, 120_000, 'and takes the new one when it does')
  const moved = compile(yaml.replace('127.0.0.1:1', '127.0.0.1:2'), { T: 'a'.repeat(16) }, skew)
  t.not(moved.revocation!.store, first.revocation!.store, 'another Redis: another store')
  const dropped = compile(BASE, {}, moved)
  t.equal(dropped.revocation, null)
})
