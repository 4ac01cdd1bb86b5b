// `npm run bench:workers` (issue 12 item 6): `workers: 2` with each worker on its own
// SO_REUSEPORT socket (`listen.reuse_port: true`, the default) against node:cluster's
// round-robin (the primary accepts each connection and hands it over IPC), beside one process,
// all `auth: none` in front of the bench's upstream. Two loads: 50 keep-alive connections, and a
// new connection for every request (`Connection: close`), where the primary's hand-over is paid
// per request. Nothing is pinned: the workers need both CPUs, so wrk shares them; CPU per
// request is summed over the gateway's processes (primary and workers). Rounds rotate the order;
// the table shows medians.
//
//   BENCH_DURATION    seconds per run (default 3)
//   BENCH_REPEATS     rounds (default 3)
//   BENCH_NODE_FLAGS  the gateways' Node options (default: the image's NODE_OPTIONS)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { killAll, runCommand, type Service, startService } from './children.js'
import { cpuMicros, imageEnvironment, imageNodeOptions, processTree, which } from './proc.js'
import { accepts, freePort, median } from './support.js'
import { runWrk } from './wrk.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BUILD_DIR = path.join(ROOT, 'node_modules/.cache/jwtgate-bench')
const DURATION_S = Number(process.env.BENCH_DURATION ?? 3)
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3)
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? imageNodeOptions(ROOT)).split(/\s+/).filter(Boolean)
const LOADS = [
  { name: 'keep-alive', connections: 50, headers: [] },
  { name: 'new connection each', connections: 50, headers: ['Connection: close'] },
] as const

async function main(): Promise<void> {
  const wrk = which('wrk')
  if (!wrk) throw new Error('wrk is not installed (apt-get install -y wrk)')
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'jwtgate-bench-workers-'))
  try {
    for (const [command, args] of [
      [process.execPath, [path.join(ROOT, 'scripts/build.js')]],
      [process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', fileURLToPath(new URL('./tsconfig.json', import.meta.url))]],
    ] as const) {
      const run = await runCommand(command, [...args], 300_000)
      if (run.code !== 0) throw new Error(`${args.join(' ')} failed:\n${run.stdout}${run.stderr}`)
    }
    const upstream = await startService('upstream', process.execPath, [path.join(BUILD_DIR, 'bench/upstream.js')], (line) => {
      try {
        return (JSON.parse(line) as { url?: string }).url
      } catch {
        return undefined
      }
    })
    const gateway = async (name: string, extra: Record<string, unknown>, listen: Record<string, unknown> = {}): Promise<Service> => {
      const port = await freePort()
      const file = path.join(tmp, `${name.replace(/\W+/g, '_')}.yaml`)
      const policy = {
        version: 1,
        admin: false,
        shutdown: { drain_delay: '0s', timeout: '1s' },
        listen: { host: '127.0.0.1', port, ...listen },
        upstreams: { up: { url: upstream.url } },
        routes: [{ path: '/**', upstream: 'up', auth: 'none' }],
        ...extra,
      }
      writeFileSync(file, stringify(policy))
      const main = path.join(ROOT, 'dist/cli/main.js')
      return startService(name, process.execPath, [...NODE_FLAGS, main, 'serve', '-c', file], () => undefined, {
        logFile: file.replace(/\.yaml$/, '.log'),
        env: imageEnvironment(ROOT),
        // A cluster accepts once its workers listen; a request then proves one answers.
        probe: () => accepts(port).then((ok) => (ok ? `http://127.0.0.1:${port}` : undefined)),
      })
    }
    const gateways = [
      await gateway('one process', {}),
      await gateway('workers: 2, reuse_port', { workers: 2 }),
      await gateway('workers: 2, round-robin', { workers: 2 }, { reuse_port: false }),
    ]
    // Priming: every worker's first requests (and the JIT) before anything is measured.
    for (const g of gateways) await runWrk({ wrk, url: `${g.url}/x`, connections: 50, durationS: 2 })

    console.error(`bench: ${REPEATS} rounds × ${gateways.length * LOADS.length} runs × ${DURATION_S} s`)
    type Row = { gateway: Service; load: (typeof LOADS)[number]; rps: number[]; cpu: number[]; errors: number }
    const rows: Row[] = gateways.flatMap((gateway) => LOADS.map((load) => ({ gateway, load, rps: [], cpu: [], errors: 0 })))
    for (let round = 0; round < REPEATS; round++) {
      const shift = Math.floor((round * rows.length) / REPEATS)
      for (const row of [...rows.slice(shift), ...rows.slice(0, shift)]) {
        row.gateway.assertAlive()
        await new Promise((r) => setTimeout(r, 100))
        const pids = processTree(row.gateway.pid)
        const cpu0 = pids.reduce((n, pid) => n + cpuMicros(pid), 0)
        const result = await runWrk({
          wrk,
          url: `${row.gateway.url}/x`,
          connections: row.load.connections,
          durationS: DURATION_S,
          headers: [...row.load.headers],
        })
        const cpu = pids.reduce((n, pid) => n + cpuMicros(pid), 0) - cpu0
        row.rps.push(result.rps)
        row.cpu.push(cpu / result.requests)
        row.errors += Object.values(result.errors).reduce((a, b) => a + b, 0)
        process.stderr.write(
          `  round ${round + 1}/${REPEATS} ${row.gateway.name.padEnd(26)} ${row.load.name.padEnd(20)} ${result.rps.toFixed(0).padStart(7)} req/s\n`,
        )
      }
    }
    console.log(
      `Node ${process.version} (${process.execPath}); the gateways' Node options: ${NODE_FLAGS.join(' ') || '(none)'}; ${os.availableParallelism()} CPUs, nothing pinned`,
    )
    console.log(
      `${'gateway'.padEnd(26)} ${'load'.padEnd(20)} ${'req/s'.padStart(8)} ${'CPU µs/req'.padStart(11)} ${'req/s ÷ one'.padStart(12)} ${'CPU ÷ one'.padStart(10)}`,
    )
    for (const row of rows) {
      const one = rows.find((r) => r.gateway === gateways[0] && r.load === row.load)!
      const rps = median(row.rps)
      const cpu = median(row.cpu)
      console.log(
        `${row.gateway.name.padEnd(26)} ${row.load.name.padEnd(20)} ${rps.toFixed(0).padStart(8)} ${cpu.toFixed(0).padStart(11)} ${`×${(rps / median(one.rps)).toFixed(2)}`.padStart(12)} ${`×${(cpu / median(one.cpu)).toFixed(2)}`.padStart(10)}${row.errors ? `  (${row.errors} errors)` : ''}`,
      )
    }
  } finally {
    await killAll()
    rmSync(tmp, { recursive: true, force: true })
  }
}

await main()
