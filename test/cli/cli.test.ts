// `jwtgate validate`, and the command as a child process, the way ops teams and the demo run it.
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { demoPorts } from '../../src/cli/demo.js'
import { fileURLToPath } from 'node:url'
import { formatWarning, validatePolicy, validationResult, validationSummary } from '../../src/cli/validate.js'
import { childEnv, jwtgate, MAIN, validationProblems as problems } from '../support/cli.js'
import { API_ROUTE, bearer, get, issuer, policy, tempFile, upstream } from '../support/harness.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const GOOD = 'version: 1\nlisten: { port: 8080 }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - { path: /x, upstream: a, auth: none }\n'

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

t.test('validate --offline: CI checks a policy without its secret files or the environment', async (t) => {
  const kit = `${ROOT}deploy/kubernetes/base/policy.yaml`
  // Without the mounted Secret: the problem names the file, and the route using the issuer adds nothing.
  const online = await jwtgate(['validate', '-c', kit])
  t.equal(online.code, 1)
  t.match(
    online.stderr,
    /policy\.yaml:\d+:\d+ cannot read secret_file \/etc\/jwtgate-secrets\/internal-jwt-secret: ENOENT\n1 problem; the policy was not loaded\n$/,
  )
  const offline = await jwtgate(['validate', '--offline', '-c', kit])
  t.equal(offline.code, 0, offline.stderr)
  t.match(offline.stdout, /policy\.yaml: ok offline \(\d+ routes, 2 issuers, 1 upstreams; 1 value from the environment or files taken as given\)\n$/)
  t.match(offline.stderr, /policy\.yaml:\d+:\d+ not checked: secret_file \/etc\/jwtgate-secrets\/internal-jwt-secret not read \(offline\)/)
  // The environment is not read: online, this short secret is refused.
  const example = `${ROOT}config/example.yaml`
  const short = { INTERNAL_JWT_SECRET: 'short' }
  t.match((await jwtgate(['validate', '-c', example], short)).stderr, /the secret must be at least 32 bytes/)
  const json = await jwtgate(['validate', '--offline', '--json', '-c', example], short)
  t.equal(json.code, 0, json.stdout)
  t.match(JSON.parse(json.stdout), { valid: true, unchecked: [{ line: 16, col: 13, message: '${INTERNAL_JWT_SECRET} taken as given (offline)' }] })

  // Values from the environment of every kind, taken as given; what depends on none is checked.
  const secret = tempFile('secret', 'x'.repeat(32))
  const yaml = `version: 1
listen: { port: "\${PORT}" }
issuers:
  local: { issuer: "\${ISS}", secret_file: ${secret}, audiences: [a], algorithms: [HS256] }
  idp: { issuer: "https://idp.example.com/", jwks_uri: "\${JWKS_URI}", audiences: [a], algorithms: [RS256] }
upstreams:
  a: { url: "\${UPSTREAM}", timeout: "\${UPSTREAM_TIMEOUT}" }
routes:
  - { path: /x, upstream: a, auth: { issuers: [local, idp] } }
`
  const ok = validatePolicy(tempFile('offline.yaml', yaml), { offline: true })
  t.match(validationSummary(ok), /: ok offline \(1 routes, 2 issuers, 1 upstreams; 6 values from the environment or files taken as given\)$/)
  const bad =
    yaml.replace('upstream: a, auth: { issuers: [local, idp] }', 'upstream: b, auth: { issuers: [local, other] }') +
    '  - { path: /x, upstream: a, auth: none }\n'
  const file = tempFile('bad.yaml', bad)
  t.same(validationResult(file, { offline: true }).problems, [
    { file, line: 9, col: 27, message: 'unknown upstream "b" (known: a)' },
    { file, line: 9, col: 55, message: 'unknown issuer "other" (known: local, idp)' },
    { file, line: 10, col: 13, message: 'route is unreachable: routes[0] (/x) matches every request it would' },
  ])
})

t.test('misuse exits 2 with one line on stderr and no stack trace', async (t) => {
  const good = tempFile('good.yaml', GOOD)
  const cases: Array<[string[], RegExp]> = [
    [['explain', '-c', good, 'GET'], /^jwtgate: explain needs a METHOD and a PATH.*; see jwtgate explain --help\n$/],
    [['validate', '-c', good, '--jsno'], /^jwtgate: Unknown option '--jsno'; see jwtgate validate --help\n$/],
    [['serve'], /^jwtgate: serve needs -c policy.yaml or JWTGATE_CONFIG; see jwtgate serve --help\n$/],
    [['demo', '--chek'], /^jwtgate: Unknown option '--chek'; see jwtgate demo --help\n$/],
    [['frobnicate'], /^jwtgate: unknown command frobnicate; see jwtgate --help\n$/],
    [['--verbose'], /^jwtgate: --verbose goes after a command; see jwtgate --help\n$/],
  ]
  for (const [args, stderr] of cases) {
    const res = await jwtgate(args, { JWTGATE_CONFIG: '' })
    t.equal(res.code, 2, args.join(' '))
    t.match(res.stderr, stderr, args.join(' '))
    t.equal(res.stdout, '')
  }
})

t.test('--help and --version, for the command and every subcommand, on stdout with exit 0', async (t) => {
  const version = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).version as string
  for (const args of [['-h'], ['help']]) {
    const res = await jwtgate(args)
    t.equal(res.code, 0, args.join(' '))
    t.match(res.stdout, /^usage: jwtgate COMMAND/)
  }
  for (const args of [['--version'], ['validate', '--version']]) {
    const res = await jwtgate(args)
    t.equal(res.code, 0)
    t.equal(res.stdout, `jwtgate ${version}\n`)
  }
  for (const command of ['serve', 'validate', 'explain', 'test', 'revoke', 'schema', 'demo']) {
    const res = await jwtgate([command, '--help'])
    t.equal(res.code, 0, command)
    t.match(res.stdout, new RegExp(`^usage: jwtgate ${command}`), command)
    t.equal(res.stderr, '')
  }
  t.match((await jwtgate(['help', 'test'])).stdout, /^usage: jwtgate test/)
})

t.test('validate --json: one object on stdout, exit 0 valid and 1 invalid', async (t) => {
  const good = tempFile('good.yaml', GOOD)
  const ok = await jwtgate(['validate', '-c', good, '--json'])
  t.equal(ok.code, 0, ok.stderr)
  t.same(JSON.parse(ok.stdout), { file: good, valid: true, problems: [], warnings: [], routes: 1, issuers: 0, upstreams: 1 })
  const bad = tempFile('bad.yaml', GOOD.replace('upstream: a', 'upstream: b'))
  const no = await jwtgate(['validate', '--json', '-c', bad])
  t.equal(no.code, 1)
  t.same(JSON.parse(no.stdout), {
    file: bad,
    valid: false,
    problems: [{ file: bad, line: 6, col: 27, message: 'unknown upstream "b" (known: a)' }],
    warnings: [],
  })
  t.equal(no.stderr, '')
})

t.test('a busy port: one JSON line on stderr and exit 1 for serve; the demo exits too', async (t) => {
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => holder.close())
  const port = (holder.address() as AddressInfo).port
  const file = tempFile('policy.yaml', GOOD.replace('port: 8080', `host: 127.0.0.1, port: ${port}`))
  const res = await jwtgate(['serve', '-c', file], {}, 20_000)
  t.equal(res.code, 1)
  const lines = res.stderr.trimEnd().split('\n')
  t.equal(lines.length, 1, res.stderr)
  t.match(JSON.parse(lines[0]!), {
    level: 60,
    service: 'jwtgate',
    listener: 'proxy',
    address: `127.0.0.1:${port}`,
    code: 'EADDRINUSE',
    msg: `cannot open the proxy listener on 127.0.0.1:${port}: the port is in use (another jwtgate, or another program, holds it)`,
  })
  const demo = await jwtgate(['demo'], { DEMO_PORT: String(port) }, 20_000)
  t.equal(demo.code, 1, 'and does not hang')
  t.match(JSON.parse(demo.stderr.trimEnd()), { code: 'EADDRINUSE', listener: 'proxy' })
})

t.test('DEMO_PORT alone moves the admin listener too; DEMO_ADMIN_PORT sets it', async (t) => {
  t.same(demoPorts(false, {}), { listen: { port: undefined } })
  t.same(demoPorts(false, { DEMO_PORT: '9000' }), { listen: { port: 9000 }, admin: { port: 0 } })
  t.same(demoPorts(false, { DEMO_PORT: '9000', DEMO_ADMIN_PORT: '9001' }), { listen: { port: 9000 }, admin: { port: 9001 } })
  t.same(demoPorts(true, { DEMO_PORT: '9000' }), { listen: { port: 0 }, admin: { port: 0 } })
})

t.test('serve: refuses a bad policy and starts nothing, saying why in JSON lines, not a stack trace', async (t) => {
  const file = tempFile('bad.yaml', 'version: 1\nlisten: { port: 0 }\nupstreams: {}\nroutes: []\n')
  const res = await jwtgate(['serve', '-c', file], {}, 20_000)
  t.equal(res.code, 1)
  t.notMatch(res.stdout, /listening/)
  const lines = res.stderr
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(lines.length, 3, 'one line per problem and a summary')
  t.match(lines[0], {
    level: 60,
    time: Number,
    service: 'jwtgate',
    file,
    line: 3,
    col: 12,
    problem: 'upstreams must NOT have fewer than 1 properties',
    msg: `${file}:3:12 upstreams must NOT have fewer than 1 properties`,
  })
  t.match(lines[2], { level: 60, problems: 2, msg: '2 problems; the policy was not loaded' })
  t.notMatch(res.stderr, /\n\s+at /, 'no stack trace')

  // A policy read far enough to know its log format uses it (a reference that does not resolve).
  const formatted = tempFile(
    'bad.yaml',
    'version: 1\nlisten: { port: 0 }\nlog: { time: iso, level_label: true }\nupstreams:\n  a: { url: "http://127.0.0.1:1" }\nroutes:\n  - { path: /x, upstream: b, auth: none }\n',
  )
  const res2 = await jwtgate(['serve', '-c', formatted], {}, 20_000)
  t.equal(res2.code, 1)
  const first = JSON.parse(res2.stderr.split('\n')[0]!) as Record<string, unknown>
  t.match(first, { level: 'fatal', time: /^\d{4}-\d\d-\d\dT/, line: 7, problem: /unknown upstream "b"/ })
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
  t.match(res.stdout, /8 passed, 0 failed/)
})
