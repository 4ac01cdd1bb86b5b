// `jwtgate serve` as Kubernetes runs it: a ConfigMap swapped by symlink, SIGHUP, SIGTERM.
import t from 'tap'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MAIN, running } from '../support/cli.js'
import { eventually, get, sleep, upstream } from '../support/harness.js'

interface Child {
  proc: ChildProcessWithoutNullStreams
  out: () => string
  url: string
  admin: string
}

async function serve(t: { teardown(fn: () => unknown): void }, policyFile: string): Promise<Child> {
  const { proc, out } = running(t, [MAIN, 'serve', '-c', policyFile])
  const started = () => /jwtgate listening on (\S+?)"[\s\S]*jwtgate admin on (\S+?)"/.exec(out())
  await eventually(
    () => `jwtgate serve starts: ${out()}`,
    20_000,
    () => started() !== null,
  )
  const [, url, admin] = started()!
  return { proc, out, url: url!, admin: admin! }
}

function policyText(upstreamUrl: string, route: string, extra = ''): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
${extra}
upstreams:
  orders: { url: "${upstreamUrl}" }
routes:
  - { path: ${route}, upstream: orders, auth: none }
`
}

/** A directory laid out as kubelet mounts a ConfigMap: policy.yaml → ..data/policy.yaml, ..data → a timestamped dir. */
function configMapDir(text: string): { file: string; swap(text: string): void } {
  const root = mkdtempSync(path.join(tmpdir(), 'jwtgate-configmap-'))
  let n = 0
  const write = (body: string) => {
    const dir = `..2026_${n++}`
    mkdirSync(path.join(root, dir))
    writeFileSync(path.join(root, dir, 'policy.yaml'), body)
    // Atomic swap of the ..data symlink, as kubelet does.
    symlinkSync(dir, path.join(root, '..data_tmp'))
    renameSync(path.join(root, '..data_tmp'), path.join(root, '..data'))
  }
  write(text)
  symlinkSync('..data/policy.yaml', path.join(root, 'policy.yaml'))
  return { file: path.join(root, 'policy.yaml'), swap: write }
}

t.test('a ConfigMap symlink swap switches traffic with no failed request', async (t) => {
  const up = await upstream(t)
  const cm = configMapDir(policyText(up.url, '/v1/**'))
  const gw = await serve(t, cm.file)
  t.equal((await get(`${gw.url}/v1/x`)).status, 200)

  let failures = 0
  let running = true
  const statuses = new Set<number>()
  const load = (async () => {
    for (let i = 0; i < 2000 && running; i++) {
      const [a, b] = await Promise.all([get(`${gw.url}/v1/x`), get(`${gw.url}/v2/x`)])
      if (a.status >= 500 || b.status >= 500) failures++
      statuses.add(a.status).add(b.status)
    }
  })()
  await sleep(200)
  cm.swap(policyText(up.url, '/v2/**'))
  try {
    await eventually('the new policy serves', 5000, async () => (await get(`${gw.url}/v2/x`)).status === 200)
  } finally {
    running = false
    await load
  }
  t.equal((await get(`${gw.url}/v1/x`)).status, 404, 'the old route is gone')
  t.equal(failures, 0, 'no request failed during the swap')
  t.same([...statuses].sort(), [200, 404], 'every request was served by one policy or the other')

  cm.swap('version: 1\nnot valid at all: [')
  await eventually('the invalid policy is rejected', 5000, () => /policy reload rejected/.test(gw.out()))
  t.equal((await get(`${gw.url}/v2/x`)).status, 200, 'an invalid policy is not loaded')
  const metrics = await (await fetch(`${gw.admin}/metrics`)).text()
  t.match(metrics, /jwtgate_policy_reloads_total\{result="success"\} 1/)
  t.match(metrics, /jwtgate_policy_reloads_total\{result="failure"\} 1/)
})

t.test('SIGHUP reloads', async (t) => {
  const up = await upstream(t)
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'jwtgate-hup-')), 'policy.yaml')
  writeFileSync(file, policyText(up.url, '/v1/**'))
  const gw = await serve(t, file)
  // Written in place and signalled, like an operator would; the watcher may also see it.
  writeFileSync(file, policyText(up.url, '/v3/**'))
  gw.proc.kill('SIGHUP')
  await eventually('the policy written before SIGHUP serves', 5000, async () => (await get(`${gw.url}/v3/x`)).status === 200)
})

t.test('SIGTERM: readiness drops first, the slow response completes, exit 0', async (t) => {
  const up = await upstream(t)
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'jwtgate-term-')), 'policy.yaml')
  writeFileSync(file, policyText(up.url, '/v1/**', 'shutdown: { drain_delay: 500ms, timeout: 10s }'))
  const gw = await serve(t, file)
  t.equal((await get(`${gw.admin}/readyz`)).status, 200)
  up.delayMs = 1500
  const slow = get(`${gw.url}/v1/slow`)
  await sleep(200)
  const exited = new Promise<number | null>((resolve) => gw.proc.on('exit', (code) => resolve(code)))
  gw.proc.kill('SIGTERM')
  await sleep(100)
  t.equal((await get(`${gw.admin}/readyz`)).status, 503, 'not ready at once')
  const res = await slow
  t.equal(res.status, 200, 'the in-flight response completed')
  t.equal(await exited, 0)
  const steps = gw
    .out()
    .split('\n')
    .flatMap((l) => /"msg":"(shutting down[^"]*|closing the listener[^"]*|shut down)"/.exec(l)?.[1] ?? [])
  t.same(steps, ['shutting down: readiness off', 'closing the listener; finishing requests in flight', 'shut down'], 'the one shutdown, step by step')
})

t.test('a second SIGTERM exits at once', async (t) => {
  const up = await upstream(t)
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'jwtgate-term2-')), 'policy.yaml')
  writeFileSync(file, policyText(up.url, '/v1/**', 'shutdown: { drain_delay: 30s, timeout: 30s }'))
  const gw = await serve(t, file)
  const exited = new Promise<number | null>((resolve) => gw.proc.on('exit', (code) => resolve(code)))
  gw.proc.kill('SIGTERM')
  await sleep(300)
  const started = Date.now()
  gw.proc.kill('SIGTERM')
  t.equal(await exited, 1)
  t.ok(Date.now() - started < 5000, 'without waiting for the drain')
})
