// `jwtgate validate`, and the command as a child process, the way ops teams and the demo run it.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { formatWarning, validatePolicy, validationSummary } from '../../src/cli/validate.js'
import { childEnv, jwtgate, MAIN, validationProblems as problems } from '../support/cli.js'
import { API_ROUTE, bearer, get, issuer, policy, tempFile, upstream } from '../support/harness.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

t.test('validate: a good policy with its warnings; a bad one with file:line:col problems', async (t) => {
  const file = tempFile(
    'bad.yaml',
    'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - path: /x\n    upstream: b\n    auth: { issuers: [idp] }\n',
  )
  t.same(problems(file), [`${file}:7:15 unknown upstream "b" (known: a)`, `${file}:8:23 unknown issuer "idp"`])
  const typo = tempFile(
    'typo.yaml',
    'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - path: /x\n    upstream: a\n    auth: none\n    methds: [GET]\n',
  )
  t.match(problems(typo), [/typo\.yaml:9:5 unknown field "methds" in routes\[0\] \(did you mean "methods"\?\)/])
  const good = tempFile(
    'good.yaml',
    'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - { path: /x, upstream: a, auth: none }\n',
  )
  const validation = validatePolicy(good)
  t.equal(validationSummary(validation), `${good}: ok (1 routes, 0 issuers, 1 upstreams)`)
  t.same(validation.warnings.map(formatWarning), [])
})

// The command's wiring: arguments, JWTGATE_CONFIG-free -c, the summary on stdout, warnings on stderr, exit 0.
t.test('the jwtgate validate command on config/example.yaml', async (t) => {
  const ok = await jwtgate(['validate', '-c', `${ROOT}config/example.yaml`], { INTERNAL_JWT_SECRET: 'x'.repeat(32) })
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /config\/example\.yaml: ok/)
  t.match(
    ok.stderr,
    /config\/example\.yaml:\d+:\d+ warning: requests to \/admin\/\*\* with methods other than GET, POST match no route and get 404/,
    'default-deny surprises are pointed out',
  )
})

t.test('a usage error exits 2 with the usage text', async (t) => {
  const res = await jwtgate(['explain', '-c', 'policy.yaml', 'GET'])
  t.equal(res.code, 2)
  t.match(res.stderr, /^jwtgate: explain needs a METHOD and a PATH.*\nusage:/)
  t.equal(res.stdout, '')
})

t.test('serve: refuses a bad policy and starts nothing', async (t) => {
  const file = tempFile('bad.yaml', 'version: 1\nlisten: { port: 0 }\nupstreams: {}\nroutes: []\n')
  const res = await jwtgate(['serve', '-c', file], {}, 20_000)
  t.equal(res.code, 1)
  t.match(res.stderr, /bad\.yaml:3:12 upstreams must NOT have fewer than 1 properties/)
  t.match(res.stderr, /\n2 problems; the policy was not loaded\n$/)
  t.notMatch(res.stdout, /listening/)
})

t.test('serve: logs where it listens, proxies, and exits 0 on SIGTERM', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = policy({ issuer: idp, upstream: up, routes: API_ROUTE })
  const child = spawn(process.execPath, [MAIN, 'serve'], {
    env: childEnv({ JWTGATE_CONFIG: tempFile('policy.yaml', yaml) }),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  let out = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in ${out}`)), 20000)
    child.stdout.on('data', (d: Buffer) => {
      out += d
      const m = /jwtgate listening on (http:\/\/[^"\s]+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
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
  const res = await jwtgate(['demo', '--check'], {}, 60_000)
  t.equal(res.code, 0, res.stdout + res.stderr)
  t.match(res.stdout, /6 passed, 0 failed/)
})
