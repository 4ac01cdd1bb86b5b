// The jwtgate command as a child process, the way ops teams and the demo run it.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { bearer, get, issuer, policy, tempFile, upstream } from '../support/harness.js'

const BIN = fileURLToPath(new URL('../../bin/jwtgate.js', import.meta.url))
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

t.test('validate: exit 0 on a good policy, 1 with file:line:col problems on a bad one', async (t) => {
  const ok = spawnSync(process.execPath, [BIN, 'validate', '-c', 'config/example.yaml'], { cwd: ROOT, env: { ...process.env, INTERNAL_JWT_SECRET: 'x'.repeat(32) }, encoding: 'utf8' })
  t.equal(ok.status, 0, ok.stderr)
  t.match(ok.stdout, /config\/example\.yaml: ok/)
  t.match(ok.stderr, /config\/example\.yaml:\d+:\d+ warning: requests to \/admin\/\*\* with methods other than GET, POST match no route and get 404/, 'default-deny surprises are pointed out')
  const file = tempFile('bad.yaml', 'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - path: /x\n    upstream: b\n    auth: { issuers: [idp] }\n')
  const bad = spawnSync(process.execPath, [BIN, 'validate', '-c', file], { encoding: 'utf8' })
  t.equal(bad.status, 1)
  t.match(bad.stderr, `${file}:7:15 unknown upstream "b" (known: a)`)
  t.match(bad.stderr, `${file}:8:23 unknown issuer "idp"`)
  t.match(bad.stderr, /2 problems; the policy was not loaded/)
  const typo = spawnSync(process.execPath, [BIN, 'validate', '-c', tempFile('typo.yaml', 'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - path: /x\n    upstream: a\n    auth: none\n    methds: [GET]\n')], { encoding: 'utf8' })
  t.equal(typo.status, 1)
  t.match(typo.stderr, /typo\.yaml:9:5 unknown field "methds" in routes\[0\] \(did you mean "methods"\?\)/)
})

t.test('serve: refuses a bad policy and starts nothing', async (t) => {
  const file = tempFile('bad.yaml', 'version: 1\nlisten: { port: 0 }\nupstreams: {}\nroutes: []\n')
  const res = spawnSync(process.execPath, [BIN, 'serve', '-c', file], { encoding: 'utf8', timeout: 20000 })
  t.equal(res.status, 1)
  t.match(res.stderr, /bad\.yaml:3:12 upstreams must NOT have fewer than 1 properties/)
  t.notMatch(res.stdout, /listening/)
})

t.test('serve: logs where it listens, proxies, and exits 0 on SIGTERM', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = policy({ issuer: idp, upstream: up, routes: '  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }' })
  const child = spawn(process.execPath, [BIN, 'serve'], { env: { ...process.env, JWTGATE_CONFIG: tempFile('policy.yaml', yaml) }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let out = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in ${out}`)), 20000)
    child.stdout.on('data', (d: Buffer) => {
      out += d
      const m = /jwtgate listening on (http:\/\/[^"\s]+)/.exec(out)
      if (m) { clearTimeout(timer); resolve(m[1]!) }
    })
  })
  const token = idp.sign({ sub: 'alice', aud: 'orders-api' })
  t.equal((await get(`${url}/api/x`, bearer(token))).status, 200)
  t.equal((await get(`${url}/api/x`)).status, 401)
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  child.kill('SIGTERM')
  t.equal(await exit, 0)
  t.notOk(out.includes(token.split('.')[2]!), 'the token never reaches the log')
})

t.test('demo --check runs the whole demo end to end', async (t) => {
  const res = spawnSync(process.execPath, [BIN, 'demo', '--check'], { cwd: ROOT, encoding: 'utf8', timeout: 60000 })
  t.equal(res.status, 0, res.stdout + res.stderr)
  t.match(res.stdout, /6 passed, 0 failed/)
})
