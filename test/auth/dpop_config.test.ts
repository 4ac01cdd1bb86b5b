import t from 'tap'
import { createLogger } from '../../src/log.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicySource } from '../../src/policy/load.js'

const policy = (dpop: string) => `version: 1
listen: { host: 127.0.0.1, port: 0 }
issuers:
  idp: { issuer: https://idp.example, jwks_uri: https://idp.example/jwks, audiences: [a], algorithms: [ES256], binding: { method: dpop } }
upstreams: { up: { url: "http://127.0.0.1:1" } }
dpop: ${dpop}
routes: [ { path: /x, upstream: up, auth: { issuers: [idp] } } ]
`

t.test("a reload keeps the process's own nonce secret, the client keys and the used proofs; a policy secret replaces it", async (t) => {
  const log = createLogger('silent')
  const compile = (text: string, previous?: ReturnType<typeof compilePolicy>) => compilePolicy(parsePolicySource('policy.yaml', text), log, previous)
  const first = compile(policy('{ nonce: {} }'))
  const second = compile(policy('{ nonce: {} }'), first)
  const now = Date.now()
  const nonce = first.auth.binding!.dpop.nonces!.current(now)
  t.ok(second.auth.binding!.dpop.nonces!.accepts(nonce, now), 'a nonce handed out before the reload is still good')
  t.equal(second.auth.binding!.dpop.keys, first.auth.binding!.dpop.keys)
  t.equal(second.auth.binding!.replay, first.auth.binding!.replay)
  const given = compile(policy(`{ nonce: { secret: "${'s'.repeat(32)}" } }`), second)
  t.notOk(given.auth.binding!.dpop.nonces!.accepts(nonce, now), 'the policy secret replaces the process one')
  const again = compile(policy('{ nonce: {} }'), given)
  t.notOk(again.auth.binding!.dpop.nonces!.accepts(given.auth.binding!.dpop.nonces!.current(now), now), 'and leaving it out makes a new one')
  for (const p of [first, second, given, again]) for (const i of p.issuers.values()) i.stop()
})
