// `npm run bench:h2`: HTTP/2 and gRPC through jwtgate, against a bare fastify HTTP/2 forwarder
// (the Node floor, bench/h2_servers.ts) measured in the same run. A report, never a test.
//
// Unary gRPC-shaped calls (POST, content-type application/grpc, te: trailers, a 12-byte message,
// grpc-status in trailers) over h2c to an h2c upstream. The load generator is h2load (Debian's
// nghttp2-client): nghttp2's own client, one of HTTP/2's reference implementations, which keeps
// many streams open per connection (-m) as gRPC clients do; wrk and autocannon speak HTTP/1.1
// only, and a Node load generator would share the CPU budget with what it measures.
// Layout as bench/run.ts: h2load on CPU 0, the proxy and the upstream on CPU 1. Rounds run every
// row once; the table shows medians and ratios to the floor of the same round.
import { mkdtempSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startDevIssuer } from '../src/devkit/dev_issuer.js'
import { killAll, runCommand, startService, type Service } from './children.js'
import { cpuMicros, pin, which } from './proc.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DURATION_S = Number(process.env.BENCH_DURATION ?? 3)
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3)
const CLIENTS = Number(process.env.BENCH_CONNECTIONS ?? 10)
const STREAMS = Number(process.env.BENCH_STREAMS ?? 10)
const NODE = process.execPath

const found = which('h2load')
if (!found) {
  console.error('bench:h2: h2load is not installed (Debian: apt-get install nghttp2-client)')
  process.exit(2)
}
const h2load: string = found

// The bench servers print {"url": …}; jwtgate logs "jwtgate listening on http://…".
const urlLine = (line: string) => /"url":"(http[^"]+)"/.exec(line)?.[1] ?? /jwtgate listening on (http[^"\s]+)/.exec(line)?.[1]

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jwtgate-bench-h2-'))
  const body = path.join(dir, 'message.bin')
  writeFileSync(body, Buffer.from([0, 0, 0, 0, 7, 0x0a, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f]))
  const servers = path.join(ROOT, 'bench/h2_servers.ts')
  const upstream = await startService('upstream', NODE, ['--import', 'tsx', servers, 'upstream'], urlLine)
  const floor = await startService('floor', NODE, ['--import', 'tsx', servers, 'floor', upstream.url], urlLine)
  const issuer = await startDevIssuer()
  const token = issuer.sign({ sub: 'bench', aud: 'bench-api' }, { expiresInSeconds: 3600 })
  const policy = (auth: string) => {
    const file = path.join(dir, `policy-${auth === 'none' ? 'none' : 'rs256'}.yaml`)
    writeFileSync(
      file,
      `version: 1
listen: { host: 127.0.0.1, port: 0, protocols: [h2c] }
admin: false
issuers:
  idp: { issuer: "${issuer.url}", jwks_uri: "${issuer.jwksUri}", audiences: [bench-api], algorithms: [RS256] }
upstreams:
  echo: { url: "${upstream.url}", protocol: h2c }
routes:
  - { path: /demo.Echo/*, upstream: echo, grpc: true, auth: ${auth} }
${process.env.BENCH_H2_EXTRA ?? ''}
`,
    )
    return file
  }
  const gateway = (name: string, auth: string) =>
    startService(name, NODE, [path.join(ROOT, 'bin/jwtgate.js'), 'serve', '-c', policy(auth)], urlLine, { logFile: path.join(dir, `${name}.log`) })
  const none = await gateway('jwtgate-none', 'none')
  const rs256 = await gateway('jwtgate-rs256', '{ issuers: [idp] }')
  for (const s of [upstream, floor, none, rs256]) pin(s.pid, 1)
  pin(process.pid, 0)

  const rows: Array<{ name: string; target: Service; measured?: Service; headers: string[] }> = [
    { name: 'upstream alone', target: upstream, headers: [] },
    { name: 'floor: fastify HTTP/2 forwarder', target: floor, measured: floor, headers: [] },
    { name: 'jwtgate gRPC auth: none', target: none, measured: none, headers: [] },
    { name: 'jwtgate gRPC RS256 (one token, cached)', target: rs256, measured: rs256, headers: [`authorization: Bearer ${token}`] },
  ]
  const results = new Map<string, Array<{ rps: number; cpuUs: number }>>()
  for (let round = 0; round < REPEATS; round++) {
    for (const row of rows) {
      const before = row.measured ? cpuMicros(row.measured.pid) : 0
      const run = await runCommand(
        'taskset',
        [
          '-c',
          '0',
          h2load,
          '-D',
          String(DURATION_S),
          '--warm-up-time',
          '1',
          '-c',
          String(CLIENTS),
          '-m',
          String(STREAMS),
          '-d',
          body,
          '-H',
          'content-type: application/grpc',
          '-H',
          'te: trailers',
          ...row.headers.flatMap((h) => ['-H', h]),
          `${row.target.url}/demo.Echo/Say`,
        ],
        (DURATION_S + 30) * 1000,
      )
      const cpu = row.measured ? cpuMicros(row.measured.pid) - before : 0
      const done = Number(/requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded/.exec(run.stdout)?.[2] ?? 0)
      const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(run.stdout)?.[1] ?? 0)
      // CPU over the warm-up and the measured time, per request done in the measured time: both
      // sides see the same warm-up, so the ratio holds.
      results.set(row.name, [...(results.get(row.name) ?? []), { rps, cpuUs: done > 0 ? cpu / done : Number.NaN }])
      if (!done) console.error(`bench:h2: ${row.name}: no request succeeded\n${run.stdout}${run.stderr}`)
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const floorRuns = results.get('floor: fastify HTTP/2 forwarder')!
  console.log(`Node ${process.version}, h2load ${CLIENTS} connections × ${STREAMS} streams, ${DURATION_S}s × ${REPEATS} rounds`)
  console.log('| | req/s | CPU µs/req | req/s / floor | CPU / floor |')
  console.log('|---|---|---|---|---|')
  for (const row of rows) {
    const runs = results.get(row.name)!
    const rpsRatio = median(runs.map((r, i) => r.rps / floorRuns[i]!.rps))
    const cpuRatio = median(runs.map((r, i) => r.cpuUs / floorRuns[i]!.cpuUs))
    const cpu = median(runs.map((r) => r.cpuUs))
    console.log(
      `| ${row.name} | ${Math.round(median(runs.map((r) => r.rps)))} | ${Number.isNaN(cpu) || !row.measured ? '' : cpu.toFixed(0)} | ×${rpsRatio.toFixed(2)} | ${row.measured ? `×${cpuRatio.toFixed(2)}` : ''} |`,
    )
  }
  await issuer.close()
}

main()
  .catch((err: Error) => {
    console.error(`bench:h2: ${err.message}`)
    process.exitCode = 1
  })
  .finally(() => killAll())
