// `workers`: how many processes serve the proxy listener.
import t from 'tap'
import { availableParallelism } from 'node:os'
import { createLogger } from '../../src/log.js'
import { loadPolicy } from '../../src/policy/compile.js'
import { policyProblems, tempFile } from '../support/harness.js'

const policy = (workers: string, extra = '', route = '{ path: /**, upstream: orders, auth: none }') => `version: 1
listen: { host: 127.0.0.1, port: 8080 }
${workers ? `workers: ${workers}` : ''}
${extra}
upstreams:
  orders: { url: "http://127.0.0.1:3001" }
routes:
  - ${route}
`

function workersOf(yaml: string): number {
  return loadPolicy(tempFile('policy.yaml', yaml), createLogger('silent')).workers
}

t.test('workers is 1 by default, a number from 1 to 64, or auto for one per available core', async (t) => {
  t.equal(workersOf(policy('')), 1)
  t.equal(workersOf(policy('4')), 4)
  t.equal(workersOf(policy('auto')), Math.min(64, availableParallelism()))
  for (const bad of ['0', '65', '2.5', 'many', '"2"']) t.not(policyProblems(policy(bad)), [], `workers: ${bad} is refused`)
  t.match(policyProblems(policy('0')), [/^3:\d+ /], 'reported at the workers line')
})

t.test('replay_protection with several workers needs the redis backend', async (t) => {
  const route = '{ path: /**, upstream: orders, auth: { issuers: [idp] }, replay_protection: true }'
  const issuer = `issuers:
  idp: { issuer: "https://idp.example.com/", secret: "0123456789abcdef0123456789abcdef", audiences: [a], algorithms: [HS256] }`
  const memory = `${issuer}\nrevocation: { backend: memory }`
  t.same(policyProblems(policy('1', memory, route)), [], 'one worker: the memory backend remembers used tokens')
  t.match(policyProblems(policy('2', memory, route)), [/replay_protection with more than one worker needs revocation.backend: redis/])
  t.match(policyProblems(policy('auto', memory, route)), [/needs revocation.backend: redis/])
  const redis = `${issuer}\nrevocation: { backend: redis, redis: { url: "redis://127.0.0.1:6379" } }`
  t.same(policyProblems(policy('2', redis, route)), [])
})
