// `jwtgate serve` with `workers: 2`: a node:cluster primary serving the admin listener and two
// worker processes sharing the proxy listener. One cluster is started and taken through its
// life in order (starting one costs seconds on a loaded machine); the steps are subtests.
import t from 'tap'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { childEnv, jwtgate, MAIN } from '../support/cli.js'
import { bearer, eventually, issuer, sleep, tempFile, upstream, fresh } from '../support/harness.js'

const ADMIN_TOKEN = 'admin-token-for-the-workers-test'

async function statuses(url: string, n: number, headers: Record<string, string> = {}): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await fresh(url, headers)).status)
  return out
}

const idp = await issuer(t)
const up = await upstream(t)
const policyText = (routes: string, revocation = '') => `version: 1
workers: 2
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drain_delay: 300ms, timeout: 5s }
issuers:
  idp: { issuer: "${idp.url}", jwks_uri: "${idp.jwksUri}", audiences: [orders-api], algorithms: [RS256] }
revocation: { backend: memory, admin_token: ${ADMIN_TOKEN}${revocation} }
upstreams:
  orders: { url: "${up.url}" }
routes:
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
${routes}
`

interface Cluster {
  proc: ChildProcessWithoutNullStreams
  out(): string
  url: string
  admin: string
  exited: Promise<number | null>
}

/** `jwtgate serve`, once every worker listens. */
async function serve(t: { teardown(fn: () => unknown): void }, policyFile: string): Promise<Cluster> {
  const proc = spawn(process.execPath, [MAIN, 'serve', '-c', policyFile], { env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => {
    out += d
  })
  proc.stderr.on('data', (d: Buffer) => {
    out += d
  })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.teardown(() => {
    proc.kill('SIGKILL')
  })
  await eventually(
    () => `the cluster starts: ${out}`,
    40_000,
    () => /"all workers listening"/.test(out),
  )
  return { proc, out: () => out, url: /jwtgate listening on (\S+?)"/.exec(out)![1]!, admin: /jwtgate admin on (\S+?)"/.exec(out)![1]!, exited }
}

const file = tempFile('policy.yaml', policyText('  - { path: /open/**, upstream: orders, auth: none }'))
// The second cluster only has to lose its primary (the last test); started alongside, to save time.
const [gw, orphaned] = await Promise.all([serve(t, file), serve(t, tempFile('policy.yaml', policyText('')))])
const { proc, url, admin, exited } = gw

const lines = (text = gw.out()) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
/** The pids of the workers the primary started, by worker number, latest last. */
const started = (worker: number, text = gw.out()) =>
  lines(text)
    .filter((l) => l.msg === `worker ${worker} started`)
    .map((l) => l.pid as number)
const listening = (pid: number) => lines().some((l) => l.msg?.toString().match(/^worker \d listening$/) && l.pid === pid)
const accessLines = () => lines().filter((l) => l.msg === 'request')
const workersOf = (list: Array<Record<string, unknown>>) => [...new Set(list.map((l) => l.worker))].sort()

const alice = idp.sign({ sub: 'alice', aud: 'orders-api', jti: 'alice-1' })
const bob = idp.sign({ sub: 'bob', aud: 'orders-api', jti: 'bob-1' })

t.test('both workers serve, each line says which; /readyz asks both', async (t) => {
  t.same(await statuses(`${url}/open/a`, 20), Array(20).fill(200))
  // Each worker writes its lines in batches, within 100 ms.
  await eventually('20 access lines', 2000, async () => accessLines().length === 20)
  t.same(workersOf(accessLines()), [1, 2], 'the access lines carry worker 1 and worker 2')
  t.not(started(1)[0], started(2)[0], 'two processes')
  await eventually('ready once both keys are loaded', 10_000, async () => (await fresh(`${admin}/readyz`)).status === 200)
  t.same(JSON.parse((await fresh(`${admin}/readyz`)).body), { status: 'ready' })
  t.equal((await fresh(`${admin}/healthz`)).status, 200)
  t.match(JSON.parse((await fresh(`${admin}/config`)).body), { policy: { workers: 2 } })
})

t.test("the primary's /metrics adds up the workers' counts", async (t) => {
  const n = 30
  t.same(await statuses(`${url}/open/count`, n), Array(n).fill(200))
  const text = (await fresh(`${admin}/metrics`)).body
  // 20 from the first test, 30 now.
  t.match(text, /jwtgate_requests_total\{route="\/open\/\*\*",method="GET",status_class="2xx"\} 50\n/)
  t.match(text, /jwtgate_request_duration_seconds_count\{route="\/open\/\*\*"\} 50\n/)
  t.match(text, /jwtgate_request_duration_seconds_bucket\{le="\+Inf",route="\/open\/\*\*"\} 50\n/)
  t.match(text, /jwtgate_jwks_keys\{issuer="idp"\} 1\n/, 'a gauge both workers report the same is not summed')
  t.match(text, /jwtgate_policy_info\{hash="[0-9a-f]{64}"\} 1\n/)
  t.match(text, /process_cpu_seconds_total /)
})

t.test('a revocation posted to the primary holds on every worker', async (t) => {
  t.same(await statuses(`${url}/api/x`, 6, bearer(alice)), Array(6).fill(200))
  const posted = await fetch(`${admin}/revocations`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify({ jti: 'alice-1' }),
  })
  t.equal(posted.status, 201)
  t.same(await statuses(`${url}/api/x`, 20, bearer(alice)), Array(20).fill(401), 'refused on every connection')
  const revoked = () => accessLines().filter((l) => l.reason === 'revoked')
  await eventually('20 refusals of the revoked token', 2000, async () => revoked().length === 20)
  t.same(workersOf(revoked()), [1, 2], 'by both workers')
  t.same(await statuses(`${url}/api/x`, 4, bearer(bob)), Array(4).fill(200), 'other tokens pass')
  t.match(JSON.parse((await fresh(`${admin}/revocations/stats`)).body), { backend: 'memory', jti: 1 })
})

t.test('a worker that does not answer: the revocation gets 503, /readyz names it', async (t) => {
  const stuck = started(2).at(-1)!
  process.kill(stuck, 'SIGSTOP')
  t.teardown(() => {
    process.kill(stuck, 'SIGCONT')
  })
  const posted = await fetch(`${admin}/revocations`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify({ sub: 'carol' }),
  })
  t.equal(posted.status, 503)
  t.match(await posted.json(), { error: 'revocation_unavailable', message: /worker 2: no answer within/ })
  const ready = await fresh(`${admin}/readyz`)
  t.equal(ready.status, 503)
  t.match(JSON.parse(ready.body), { status: 'not_ready', reasons: [/^worker 2: not answering/] })
  process.kill(stuck, 'SIGCONT')
  await eventually('ready again once it answers', 5000, async () => (await fresh(`${admin}/readyz`)).status === 200)
})

t.test('a killed worker is replaced, with the revocations, and the gateway keeps answering', async (t) => {
  const victim = started(1).at(-1)!
  process.kill(victim, 'SIGKILL')
  // A connection the primary handed to the worker as it died is lost with it, as with any crash.
  await eventually('the primary logs that worker 1 died', 5000, async () => /"msg":"worker 1 died; starting another"/.test(gw.out()))
  const during = await statuses(`${url}/open/b`, 10)
  t.same(during, Array(10).fill(200), 'the other worker answers meanwhile')
  await eventually('a new worker 1 listens', 30_000, async () => started(1).length === 2 && listening(started(1)[1]!))
  t.match(gw.out(), /"worker":1,"pid":\d+,"code":null,"signal":"SIGKILL"[^\n]*"msg":"worker 1 died; starting another"/)
  await eventually('ready again', 10_000, async () => (await fresh(`${admin}/readyz`)).status === 200)
  const before = accessLines().length
  t.same(await statuses(`${url}/api/x`, 10, bearer(alice)), Array(10).fill(401), 'the new worker refuses the revoked token too')
  await eventually('10 more access lines', 2000, async () => accessLines().length >= before + 10)
  t.same(workersOf(accessLines().slice(before)), [1, 2])
})

t.test('a reload that changes a revocation setting keeps the revocations, in the primary and every worker', async (t) => {
  const posted = await fetch(`${admin}/revocations`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify({ sub: 'bob' }),
  })
  t.equal(posted.status, 201)
  const reloadedBefore = lines().filter((l) => l.worker === undefined && l.msg === 'policy reloaded').length
  writeFileSync(file, policyText('  - { path: /open/**, upstream: orders, auth: none }', ', max_token_lifetime: 12h'))
  proc.kill('SIGHUP')
  await eventually('the primary and both workers reloaded', 10_000, async () =>
    lines().some(
      (l, i, all) =>
        l.worker === undefined &&
        l.msg === 'policy reloaded' &&
        l.workers === 2 &&
        all.slice(0, i + 1).filter((m) => m.worker === undefined && m.msg === 'policy reloaded').length > reloadedBefore,
    ),
  )
  t.same(await statuses(`${url}/api/x`, 10, bearer(alice)), Array(10).fill(401), 'the revoked jti is refused by every worker')
  t.same(await statuses(`${url}/api/x`, 10, bearer(bob)), Array(10).fill(401), 'the revoked subject too')
  t.match(JSON.parse((await fresh(`${admin}/revocations/stats`)).body), { backend: 'memory', jti: 1, subjects: 2 }, "the primary's store kept them")
  // Each worker writes its lines in batches, within 100 ms.
  await eventually('the carry-over said by the primary and each worker', 2000, async () =>
    [undefined, 1, 2].every((w) => lines().some((l) => l.worker === w && l.msg === 'revocations carried over into the reloaded memory store')),
  )
})

t.test('a policy file change reloads every worker; SIGHUP too; a bad edit keeps the loaded policy', async (t) => {
  writeFileSync(file, policyText('  - { path: /open/**, upstream: orders, auth: none }\n  - { path: /new/**, upstream: orders, auth: none }'))
  await eventually('the new route answers on every connection', 10_000, async () => (await statuses(`${url}/new/x`, 6)).every((s) => s === 200))
  writeFileSync(file, policyText('  - { path: /hup/**, upstream: orders, auth: none }'))
  proc.kill('SIGHUP')
  await eventually('after SIGHUP', 10_000, async () => (await statuses(`${url}/hup/x`, 6)).every((s) => s === 200))
  writeFileSync(file, policyText('  - { path: /bad/**, upstream: nowhere, auth: none }'))
  proc.kill('SIGHUP')
  await eventually('the bad reload is logged as rejected', 5000, async () => /policy reload rejected/.test(gw.out()))
  t.same(await statuses(`${url}/hup/x`, 6), Array(6).fill(200), 'the loaded policy still serves')
  t.same(await statuses(`${url}/bad/x`, 2), [404, 404])
  const text = (await fresh(`${admin}/metrics`)).body
  t.match(text, /jwtgate_policy_reloads_total\{result="failure"\} [12]\n/, 'counted once per refused reload (the watcher may see the file too)')
  t.match(text, /jwtgate_policy_reloads_total\{result="success"\} [2-4]\n/)
  t.notMatch(gw.out(), /"worker":\d,[^\n]*"msg":"policy reload rejected"/, 'no worker saw the bad policy')
  t.match(text, /\njwtgate_policy_last_reload_success 0\n/, 'the primary says the last reload failed, once (not per worker)')
  const config = JSON.parse((await fresh(`${admin}/config`)).body)
  t.equal(config.last_reload.result, 'failure')
  t.match(config.last_reload.problems, [/policy\.yaml:\d+:\d+ unknown upstream "nowhere"/])
})

t.test('SIGTERM: readiness off at once, every worker drains and exits, then the primary, with 0', async (t) => {
  const pids = [...started(1), ...started(2)]
  proc.kill('SIGTERM')
  await sleep(100)
  t.same(JSON.parse((await fresh(`${admin}/readyz`)).body), { status: 'not_ready', reasons: ['shutting down'] })
  t.equal(await exited, 0)
  const alive = pids.filter((pid) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  })
  t.same(alive, [], 'no worker left running')
  t.match(gw.out(), /"worker":1,"msg":"shut down"/)
  t.match(gw.out(), /"worker":2,"msg":"shut down"/)
  const primary = lines()
    .filter((l) => l.worker === undefined)
    .map((l) => l.msg)
  t.same(
    primary.filter((m) => /^(shutting down|telling every worker|shut down)/.test(String(m))),
    ['shutting down: readiness off', 'telling every worker to drain and exit', 'shut down'],
    "the primary's shutdown is the gateway's, the workers told instead of a listener closed",
  )
  const torn = gw
    .out()
    .split('\n')
    .filter((l) => l !== '' && !isJson(l))
  t.same(torn, [], 'every line of the shared stdout is whole JSON')
})

t.test('workers exit when the primary is gone', async () => {
  const pids = [1, 2].map((n) => started(n, orphaned.out())[0]!)
  orphaned.proc.kill('SIGKILL')
  const gone = (pid: number) => {
    try {
      process.kill(pid, 0)
      return false
    } catch {
      return true
    }
  }
  await eventually('both workers exited', 10_000, async () => pids.every(gone))
})

t.test('a bad policy with workers: 2 exits with file:line:col before forking anything', async (t) => {
  const bad = tempFile(
    'policy.yaml',
    'version: 1\nworkers: 2\nlisten: { port: 0 }\nupstreams: { a: { url: "http://127.0.0.1:1" } }\nroutes:\n  - { path: /x, upstream: b, auth: none }\n',
  )
  const run = await jwtgate(['serve', '-c', bad])
  t.equal(run.code, 1)
  t.match(run.stderr, /policy\.yaml:6:\d+ .*b/)
  t.notMatch(run.stdout, /worker \d started/)
})

function isJson(line: string): boolean {
  try {
    JSON.parse(line)
    return true
  } catch {
    return false
  }
}
