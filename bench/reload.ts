// `npm run bench:reload` (issue 16 item 9): how long `validate` takes for a policy of 1,000 and
// 5,000 routes, and the longest a request waits while a gateway serving a 5,000-route policy
// reloads it, under light load (one request at a time, one every 2 ms, on one keep-alive
// connection). Targets: 5,000 routes validate in under 2 s; a reload stalls requests by at most
// 50 ms. Printed, not asserted: the tests bound the work by counts, this measures the time.
//
//   BENCH_RELOADS     reloads measured (default 5)
//   BENCH_NODE_FLAGS  the gateway's Node options (default: the image's NODE_OPTIONS)
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { validatePolicy } from '../src/cli/validate.js'
import { imageEnvironment, imageNodeOptions } from './proc.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RELOADS = Number(process.env.BENCH_RELOADS ?? 5)
// As bench/run.ts: the image's Node options unless BENCH_NODE_FLAGS says otherwise ("" for Node's).
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? imageNodeOptions(ROOT)).split(/\s+/).filter(Boolean)
const tmp = mkdtempSync(path.join(tmpdir(), 'jwtgate-bench-reload-'))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A policy of `n` routes shaped like a large real one: distinct services, methods, a few hosts, claim checks, a catch-all. */
function policy(n: number, upstreamUrl: string, port: number, variant = 0): Record<string, unknown> {
  const routes: Array<Record<string, unknown>> = []
  const auth = { issuers: ['local'], claims: { email: { matches: '[^@]+@example\\.com' } } }
  for (let i = 0; routes.length < n - 1; i++) {
    const svc = `svc${i}`
    routes.push({ path: `/${svc}/v${variant}/items/*`, methods: ['GET', 'HEAD'], upstream: 'up', auth })
    routes.push({ path: `/${svc}/v${variant}/items/*`, methods: ['PUT', 'DELETE'], upstream: 'up', auth })
    routes.push({ path: `/${svc}/admin/**`, host: `admin${i % 10}.example.com`, upstream: 'up', auth })
    routes.push({ path: `/${svc}/**`, upstream: 'up', auth: 'none' })
  }
  routes.length = n - 1
  routes.push({ path: '/**', upstream: 'up', auth: 'none' })
  return {
    version: 1,
    listen: { host: '127.0.0.1', port },
    issuers: {
      local: { issuer: 'https://local.example', secret: 'x'.repeat(48), audiences: ['bench'], algorithms: ['HS256'] },
    },
    upstreams: { up: { url: upstreamUrl } },
    routes,
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

async function main(): Promise<void> {
  console.log(`Node ${process.version}; the gateway's Node options: ${NODE_FLAGS.join(' ') || '(none)'}`)
  const upstream = createServer((_req, res) => res.end('ok'))
  // Longer than any reload's pause: an idle pooled connection the upstream closes while the
  // gateway is paused would be a 502 (undici does not retry), not a measure of the pause.
  upstream.keepAliveTimeout = 120_000
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`

  for (const n of [1000, 5000]) {
    const file = path.join(tmp, `validate-${n}.yaml`)
    writeFileSync(file, stringify(policy(n, upstreamUrl, 0), { aliasDuplicateObjects: false }))
    const times: number[] = []
    for (let k = 0; k < 3; k++) {
      const started = performance.now()
      const v = validatePolicy(file)
      times.push(performance.now() - started)
      if (v.routes !== n) throw new Error(`validated ${v.routes} routes, not ${n}`)
    }
    console.log(`validate, ${n} routes: ${median(times).toFixed(0)} ms (median of 3)`)
  }

  // A gateway on a 5,000-route policy, reloaded by SIGHUP (each time with a changed file).
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port
      s.close(() => resolve(p))
    })
  })
  const file = path.join(tmp, 'serve.yaml')
  writeFileSync(file, stringify(policy(5000, upstreamUrl, port), { aliasDuplicateObjects: false }))
  const child = spawn(process.execPath, [...NODE_FLAGS, path.join(ROOT, 'bin/jwtgate.js'), 'serve', '-c', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...imageEnvironment(ROOT) },
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
    // What a flag such as --trace-gc prints, for a look at what holds the loop.
    for (const line of d.toString().split('\n')) if (line && !line.startsWith('{')) console.error(line)
  })
  try {
    const agent = new Agent({ connections: 1 })
    const get = async () => {
      const res = await request(`http://127.0.0.1:${port}/svc3/x`, { dispatcher: agent })
      await res.body.dump()
      return res.statusCode
    }
    for (let i = 0; ; i++) {
      if (i > 300) throw new Error(`the gateway did not start:\n${out}`)
      try {
        if ((await get()) === 200) break
      } catch {}
      await sleep(100)
    }
    const reloadLines = () => (out.match(/"policy reloaded"/g) ?? []).length
    /** The longest request over `ms`, or, with `until`, from 200 ms in until it holds (then 300 ms more). */
    const measure = async (ms: number, during?: () => void, until?: () => boolean): Promise<number> => {
      let worst = 0
      const started = performance.now()
      let fired = false
      let doneAt = Number.POSITIVE_INFINITY
      for (;;) {
        const now = performance.now()
        if (until ? now > doneAt || now - started > 30_000 : now - started > ms) break
        if (!fired && during && now - started > 200) {
          fired = true
          during()
        }
        if (until && fired && doneAt === Number.POSITIVE_INFINITY && until()) doneAt = now + 300
        const sent = performance.now()
        const status = await get()
        if (status !== 200) throw new Error(`a request got ${status}`)
        worst = Math.max(worst, performance.now() - sent)
        await sleep(2)
      }
      return worst
    }
    const quiet = await measure(1500)
    const stalls: number[] = []
    const reloadsSeen: number[] = []
    for (let k = 1; k <= RELOADS; k++) {
      const before = reloadLines()
      // A changed file (the watcher sees it) and a SIGHUP: coalesced, one reload is expected.
      writeFileSync(file, stringify(policy(5000, upstreamUrl, port, k), { aliasDuplicateObjects: false }))
      stalls.push(
        await measure(
          0,
          () => child.kill('SIGHUP'),
          () => reloadLines() > before,
        ),
      )
      await sleep(1000)
      reloadsSeen.push(reloadLines() - before)
    }
    console.log(`longest request, 5,000 routes, no reload: ${quiet.toFixed(1)} ms`)
    console.log(
      `longest request during a reload of 5,000 routes: median ${median(stalls).toFixed(1)} ms, worst ${Math.max(...stalls).toFixed(1)} ms (${RELOADS} reloads: ${stalls.map((s) => s.toFixed(0)).join(', ')} ms; "policy reloaded" lines per file change + SIGHUP: ${reloadsSeen.join(', ')})`,
    )
    await agent.close()
  } finally {
    child.kill('SIGTERM')
    upstream.close()
  }
}

await main()
