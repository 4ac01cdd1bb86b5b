// `npm run bench`: throughput and cost of jwtgate against the upstream alone and against a bare
// fastify + reply-from forwarder, in one run. A report, never a test: nothing here asserts a time.
//
// Layout: wrk on CPU 0 (with this process), the proxy under test and the upstream on CPU 1.
// Processes are started once and kept for all rounds: the upstream, the floor, jwtgate with
// auth: none, and one jwtgate per algorithm that serves its 1, 1k and 10k token rows. CPU time is
// measured per run, so it is per scenario; peak RSS is per process (the three rows of one
// algorithm share theirs). Before the first round every process is primed: each token sent once
// (at least PRIME_MIN requests), which warms the JIT and fills the verified-token cache, so the
// rotating-token rows are the cache's steady state, not a cold start (BENCH_TOKEN_CACHE=0 turns
// the cache off: then every request verifies a signature).
// Rounds run every scenario once, in an order rotated per round; the table shows medians.
// The HTTP/2 rows (a2, b2, c2: unary gRPC calls over h2c to an h2c upstream, bench/h2load.ts)
// run in the same rounds, against their own upstream and floor; h2load missing, they are skipped.
import { execFileSync } from 'node:child_process'
import { createPublicKey, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { stringify } from 'yaml'
import { startDevIssuer, type DevIssuer } from '../src/devkit/dev_issuer.js'
import { killAll, killAllNow, runCommand, startService, type Service } from './children.js'
import { accepts, freePort, median } from './support.js'
import { cpuMicros, machineTicks, peakRssBytes, pin, rssBytes, which, imageEnvironment, imageNodeOptions, missingPreloads } from './proc.js'
import { makeTokens, type Signer } from './tokens.js'
import { dpopClients, proofLines, type DpopClient } from './dpop.js'
import { runWrk, type WrkRun } from './wrk.js'
import { grpcCalls, runH2load } from './h2load.js'
import { compareVersions, EXPRESS_PEER_SERVER, haproxyFiles, installExpressPeer, revocationList, versionOf } from './peers.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url))

function intFromEnv(name: string, fallback: number, max: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (Number.isInteger(value) && value >= 1 && value <= max) return value
  console.error(`bench: ${name} must be a whole number from 1 to ${max}, not "${raw}"`)
  process.exit(2)
}

const DURATION_S = intFromEnv('BENCH_DURATION', 3, 3600)
const REPEATS = intFromEnv('BENCH_REPEATS', 3, 100)
const CONNECTIONS = intFromEnv('BENCH_CONNECTIONS', 50, 10_000)
// h2load's connections and the streams each keeps open (as a gRPC client's channel multiplexes calls).
const H2_CONNECTIONS = intFromEnv('BENCH_H2_CONNECTIONS', 10, 1000)
const H2_STREAMS = intFromEnv('BENCH_H2_STREAMS', 10, 1000)
const TOKEN_CACHE = process.env.BENCH_TOKEN_CACHE // unset: jwtgate's default
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL // unset: jwtgate's default (info, one line a request)
const ACCESS_LOG = process.env.BENCH_ACCESS_LOG // unset: jwtgate's default (log.access: true)
// Node options for the jwtgate processes: the image's (its Dockerfile's NODE_OPTIONS) unless
// BENCH_NODE_FLAGS says otherwise, e.g. "" for Node's defaults or "--max-semi-space-size=4".
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? imageNodeOptions(ROOT)).split(/\s+/).filter(Boolean)
// The image's other ENV lines (LD_PRELOAD: its allocator) for the jwtgate processes; BENCH_IMAGE_ENV=0: none.
const IMAGE_ENV = imageEnvironment(ROOT)
const MISSING_PRELOADS = process.env.BENCH_IMAGE_ENV === '0' ? [] : missingPreloads(ROOT)
const IMAGE_ENV_TEXT = Object.entries(IMAGE_ENV)
  .map(([name, value]) => `${name}=${value}`)
  .join(' ')
const ONLY = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY, 'i') : undefined
const OUT = process.env.BENCH_OUT
// A directory: the proxies run under `node --cpu-prof` and write their profiles there on exit
// (summarize one with bench/profile.ts).
const PROFILE_DIR = process.env.BENCH_PROFILE ? path.resolve(process.env.BENCH_PROFILE) : undefined
const PRIME_MIN = 1500
// The bench's own servers, compiled by bench/tsconfig.json; jwtgate runs from dist/, built by the
// project's build as the image's is.
const BUILD_DIR = path.join(ROOT, 'node_modules/.cache/jwtgate-bench')
const TOKEN_COUNTS = [1, 1000, 10_000] as const
const REVOKED_ENTRIES = 100_000
const UPSTREAM = 'a  upstream direct'
const FLOOR = 'b  floor (fastify+reply-from)'
const NONE = 'c  jwtgate auth:none'
const ROUTES_500 = 'c  jwtgate auth:none, 500 routes'
const REVOCATION = 'c  jwtgate RS256 1k tokens, 100k revoked'
const HAPROXY = 'p  HAProxy jwt_verify RS256 1k tokens'
const EXPRESS = 'p  express+express-jwt RS256 1k tokens'
const DPOP = 'c  jwtgate RS256 1k DPoP-bound, ES256 proofs'
// The HTTP/2 rows: their own upstream (a2) and floor (b2), bench/h2_upstream.ts and bench/h2_floor.ts.
const H2_UPSTREAM = 'a2 h2c upstream direct'
const H2_FLOOR = 'b2 h2c floor (fastify http2)'
const H2_NONE = 'c2 jwtgate h2c gRPC auth:none'
const H2_RS256_1 = 'c2 jwtgate h2c gRPC RS256 1 token'
const H2_RS256_1K = 'c2 jwtgate h2c gRPC RS256 1k tokens (query)'
const H2_ROWS = [H2_NONE, H2_RS256_1, H2_RS256_1K]
// The gRPC method the HTTP/2 rows call; the 1k row's route reads its token from ?access_token=
// (h2load sends one header set, but cycles through a list of URLs).
const GRPC_PATH = '/bench.Echo/Say'
const GRPC_QUERY_PATH = '/bench.EchoByQuery/Say'
/** The rows besides the token rows that need RS256 tokens. */
const EXTRA_RS256 = [REVOCATION, HAPROXY, EXPRESS, DPOP]
// A DPoP proof is accepted once: each run of the DPoP row gets this many, signed ahead (more
// requests than that wrap around to used proofs, which show as errors in the row).
const DPOP_REQUESTS_PER_S = intFromEnv('BENCH_DPOP_REQUESTS_PER_S', 15_000, 1_000_000)
const ALGORITHMS = ['RS256', 'ES256', 'HS256'] as const
const AUDIENCE = 'bench-api'
const PATH = '/api/items'
const LOADGEN_CPU = 0
const SERVER_CPU = 1
// Read before pinning: afterwards this process sees one CPU.
const CPUS = os.availableParallelism()

/** An HTTP/2 row's calls: the method's path, and where its token goes (none: no token). */
interface H2Calls {
  path: string
  token?: 'header' | 'query'
}

interface Scenario {
  name: string
  service: Service
  /** The upstream behind it (whose CPU time the row reports too). */
  upstream: Service
  /** An HTTP/2 row: h2load's request headers and, for rotating tokens, its file of URLs. */
  h2?: { path: string; headers: string[]; urlsFile?: string }
  /** Its tokens, one a line; none: no Authorization header. */
  tokensFile?: string
  /** The DPoP row's requests of each round (tokens.lua lines with a proof each), made once the gateway's URL is known. */
  roundFiles?: string[]
}

interface RunResult extends WrkRun {
  round: number
  cpuUsPerReq: number
  upstreamCpuUsPerReq: number
  /** The proxy's resident set size right after the run. */
  rssMB: number
}

interface Summary {
  name: string
  rps: number
  p50Ms: number
  p99Ms: number
  cpuUsPerReq: number
  /** Resident set size after the scenario's last run (issue 6's "RSS after the 10,000-token run"). */
  rssMB: number
  peakRssMB: number
  /** Socket errors and >= 400 answers over all runs; non-zero makes the row suspect. */
  errors: number
  runs: RunResult[]
}

let tmp: string | undefined
const issuers: DevIssuer[] = []

async function main(): Promise<void> {
  if (process.platform !== 'linux') throw new Error('the benchmark reads /proc and needs Linux')
  const wrk = which('wrk')
  if (!wrk) {
    console.error('wrk is not installed. Install it, then run again:\n  Debian/Ubuntu: sudo apt-get install -y wrk\n  macOS: brew install wrk')
    process.exitCode = 2
    return
  }
  const pinned = which('taskset') !== undefined && CPUS >= 2
  tmp = mkdtempSync(path.join(os.tmpdir(), 'jwtgate-bench-'))
  console.error('bench: building (scripts/build.js into dist/, bench/tsconfig.json for the floor and the upstream)')
  const build = await runCommand(process.execPath, [path.join(ROOT, 'scripts/build.js')], 300_000)
  if (build.code !== 0) throw new Error(`the build failed:\n${build.stdout}${build.stderr}`)
  const tsc = await runCommand(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', here('./tsconfig.json')], 300_000)
  if (tsc.code !== 0) throw new Error(`tsc failed:\n${tsc.stdout}${tsc.stderr}`)
  // How each process is started: a script of the bench (floor, upstream) and jwtgate itself.
  const script = (name: string) => [path.join(BUILD_DIR, `bench/${name}.js`)]
  const jwtgateMain = path.join(ROOT, 'dist/cli/main.js')

  // Tokens first, while both CPUs are free: 10,000 RS256 signatures take a few seconds.
  const started = performance.now()
  const seconds = () => ((performance.now() - started) / 1000).toFixed(1)
  const algorithms = ALGORITHMS.filter((alg) =>
    [...TOKEN_COUNTS.map((n) => scenarioName(alg, n)), ...EXTRA_RS256, ...H2_ROWS].some((n) => n.includes(alg) && selected(n)),
  )
  const signers = new Map<string, { signer: Signer; issuer: Record<string, unknown> }>()
  for (const alg of algorithms) {
    if (alg === 'HS256') {
      const secret = randomBytes(32).toString('hex')
      signers.set(alg, { signer: { alg, secret }, issuer: { issuer: 'bench-hs256', secret } })
    } else {
      const dev = await startDevIssuer({ keys: [{ alg }] })
      issuers.push(dev)
      const key = dev.keys[0]!
      signers.set(alg, { signer: { alg, kid: key.kid, privateKey: key.privateKey }, issuer: { issuer: dev.url, jwks_uri: dev.jwksUri } })
    }
  }
  const tokens = new Map<string, string[]>()
  for (const alg of algorithms) {
    const { signer, issuer } = signers.get(alg)!
    tokens.set(alg, await makeTokens(signer, { iss: issuer.issuer as string, aud: AUDIENCE, lifetimeS: 24 * 3600 }, Math.max(...TOKEN_COUNTS)))
  }
  console.error(`bench: ${[...tokens.values()].reduce((n, t) => n + t.length, 0)} tokens signed in ${seconds()} s`)

  // The processes under test.
  const json = (line: string) => {
    try {
      const url = (JSON.parse(line) as { url?: unknown }).url
      return typeof url === 'string' ? url : undefined
    } catch {
      return undefined
    }
  }
  const listening = (line: string) => /"msg":"jwtgate listening on (http:\/\/[^"]+)"/.exec(line)?.[1]
  const upstream = await startService('upstream', process.execPath, script('upstream'), json)
  // The HTTP/2 rows' upstream, when they run.
  const h2load = which('h2load')
  const h2Skip = h2load ? undefined : 'h2load is not installed (apt-get install -y nghttp2-client)'
  const h2Wanted = [H2_UPSTREAM, H2_FLOOR, ...H2_ROWS].some(selected)
  const h2Upstream = h2Wanted && !h2Skip ? await startService('h2c upstream', process.execPath, script('h2_upstream'), json) : undefined
  // The port is chosen here: with BENCH_LOG_LEVEL=warn the gateway does not log where it listens.
  const jwtgate = (name: string, policy: Record<string, unknown>, protocols?: string[]) => async () => {
    const file = path.join(tmp!, name.replace(/\W+/g, '_'))
    const port = await freePort()
    writeFileSync(`${file}.yaml`, stringify({ ...policy, listen: { host: '127.0.0.1', port, ...(protocols ? { protocols } : {}) } }))
    return startService(name, process.execPath, [...profileArgs(name), ...NODE_FLAGS, jwtgateMain, 'serve', '-c', `${file}.yaml`], listening, {
      logFile: `${file}.log`,
      env: IMAGE_ENV,
      probe: () => accepts(port).then((ok) => (ok ? `http://127.0.0.1:${port}` : undefined)),
    })
  }
  const basePolicy = {
    version: 1,
    admin: false, // the gateways would all want 127.0.0.1:9901
    shutdown: { drain_delay: '0s', timeout: '1s' }, // no readiness drain for the benchmark's exit
    upstreams: { up: { url: upstream.url } },
    identity_headers: { 'x-user-id': 'sub' },
    ...(TOKEN_CACHE !== undefined ? { token_cache: { max_entries: Number(TOKEN_CACHE) } } : {}),
    ...(LOG_LEVEL !== undefined || ACCESS_LOG !== undefined
      ? { log: { ...(LOG_LEVEL !== undefined ? { level: LOG_LEVEL } : {}), ...(ACCESS_LOG !== undefined ? { access: ACCESS_LOG !== 'false' } : {}) } }
      : {}),
  }
  // One process per group; a group's scenarios share it. The 1 and 1k token sets are the first
  // tokens of the 10k set, so one gateway's cache holds all three (10k entries, the default).
  interface Group {
    name: string
    start: () => Promise<Service>
    /** Bearer tokens, or tokens.lua lines (`DPoP <token>\t<proof>`) for priming. */
    tokens?: string[]
    /** The DPoP row: its clients and their tokens, whose proofs are made once the gateway listens. */
    dpop?: { clients: DpopClient[]; tokens: string[] }
    /** The DPoP row's request files, one per round. */
    roundFiles?: string[]
    scenarios: { name: string; count?: number; h2?: H2Calls }[]
    /** Why the group cannot run here (a tool missing): its rows are listed as skipped. */
    skip?: string
  }
  const groups: Group[] = [
    {
      name: 'floor',
      start: () => startService('floor', process.execPath, [...profileArgs('floor'), ...script('floor'), upstream.url], json),
      scenarios: [{ name: FLOOR }],
    },
    {
      name: 'jwtgate auth:none',
      start: jwtgate('jwtgate auth:none', { ...basePolicy, routes: [{ path: '/**', upstream: 'up', auth: 'none' }] }),
      scenarios: [{ name: NONE }],
    },
  ]
  for (const alg of algorithms) {
    const policy = {
      ...basePolicy,
      issuers: { bench: { ...signers.get(alg)!.issuer, audiences: [AUDIENCE], algorithms: [alg] } },
      routes: [{ path: '/**', upstream: 'up', auth: { issuers: ['bench'] } }],
    }
    groups.push({
      name: `jwtgate ${alg}`,
      start: jwtgate(`jwtgate ${alg}`, policy),
      tokens: tokens.get(alg),
      scenarios: TOKEN_COUNTS.map((count) => ({ name: scenarioName(alg, count), count })),
    })
  }
  // Route matching: 500 routes under one first segment, the request matching the last one,
  // against auth:none's single route.
  groups.push({
    name: 'jwtgate 500 routes',
    start: jwtgate('jwtgate 500 routes', {
      ...basePolicy,
      routes: [
        ...Array.from({ length: 499 }, (_, i) => ({ path: `/api/svc-${i}/**`, upstream: 'up', auth: 'none' })),
        { path: '/api/**', upstream: 'up', auth: 'none' },
      ],
    }),
    scenarios: [{ name: ROUTES_500 }],
  })
  const rs256 = signers.get('RS256')
  if (rs256) {
    const rsPolicy = {
      ...basePolicy,
      issuers: { bench: { ...rs256.issuer, audiences: [AUDIENCE], algorithms: ['RS256'] } },
      routes: [{ path: '/**', upstream: 'up', auth: { issuers: ['bench'] } }],
    }
    // Revocation (issue 5): 100,000 entries in the file backend, none of them revoking a bench
    // token, but every bench token's subject has one, so each request finds and weighs an entry.
    const revoked = path.join(tmp, 'revoked.json')
    writeFileSync(revoked, JSON.stringify(revocationList(REVOKED_ENTRIES)))
    groups.push({
      name: 'jwtgate RS256 revocation',
      start: jwtgate('jwtgate RS256 revocation', { ...rsPolicy, revocation: { backend: 'file', file: { path: revoked } } }),
      tokens: tokens.get('RS256'),
      scenarios: [{ name: REVOCATION, count: 1000 }],
    })
    const signer = rs256.signer as Exclude<Signer, { alg: 'HS256' }>
    if (selected(DPOP)) {
      // 1,000 clients with their own keys, each token bound to one (cnf.jkt); one proof a request.
      const clients = dpopClients(1000)
      const bound = await makeTokens(
        signer,
        { iss: rs256.issuer.issuer as string, aud: AUDIENCE, lifetimeS: 24 * 3600, cnf: (i) => ({ jkt: clients[i]!.jkt }) },
        1000,
      )
      groups.push({
        name: 'jwtgate DPoP',
        start: jwtgate('jwtgate DPoP', {
          ...rsPolicy,
          issuers: { bench: { ...rsPolicy.issuers.bench, binding: { method: 'dpop', required: true } } },
          // Proofs are signed before the rounds start, so their iat may be minutes old; every one is remembered.
          dpop: { proof_max_age: '1h', replay_cache: { max_entries: 5_000_000 } },
        }),
        dpop: { clients, tokens: bound },
        scenarios: [{ name: DPOP, count: 1000 }],
      })
    }
    const haproxy = which('haproxy')
    const haproxyVersion = haproxy ? versionOf(haproxy) : undefined
    groups.push({
      name: 'HAProxy',
      tokens: tokens.get('RS256'),
      scenarios: [{ name: HAPROXY, count: 1000 }],
      skip: !haproxy
        ? 'haproxy is not installed (apt-get install -y haproxy)'
        : !haproxyVersion || compareVersions(haproxyVersion, '2.5') < 0
          ? `haproxy ${haproxyVersion ?? '(unknown version)'} has no jwt_verify (2.5 or later)`
          : undefined,
      start: async () => {
        const port = await freePort()
        const dir = path.join(tmp!, 'haproxy')
        const config = haproxyFiles(dir, {
          port,
          upstream: upstream.url,
          issuer: rs256.issuer.issuer as string,
          audience: AUDIENCE,
          publicKey: createPublicKey(signer.privateKey),
        })
        return startService('HAProxy', haproxy!, ['-db', '-f', config], () => undefined, {
          logFile: path.join(dir, 'haproxy.log'),
          probe: () => accepts(port).then((ok) => (ok ? `http://127.0.0.1:${port}` : undefined)),
        })
      },
    })
    const express = selected(EXPRESS) ? installExpressPeer() : undefined
    groups.push({
      name: 'express',
      tokens: tokens.get('RS256'),
      scenarios: [{ name: EXPRESS, count: 1000 }],
      skip: express,
      start: async () => {
        const pem = path.join(tmp!, 'rs256-public.pem')
        writeFileSync(pem, createPublicKey(signer.privateKey).export({ type: 'spki', format: 'pem' }))
        return startService('express', process.execPath, [EXPRESS_PEER_SERVER, upstream.url, pem, rs256.issuer.issuer as string, AUDIENCE], json)
      },
    })
  }
  // HTTP/2: unary gRPC calls over h2c, to the h2c upstream (bench/h2_upstream.ts).
  const h2Upstreams = { up: { url: h2Upstream?.url ?? 'http://127.0.0.1:1', protocol: 'h2c' } }
  const grpcRoute = (path: string, auth: unknown, extra: Record<string, unknown> = {}) => ({ path, upstream: 'up', grpc: true, auth, ...extra })
  groups.push(
    {
      name: 'h2c floor',
      start: () => startService('h2c floor', process.execPath, [...profileArgs('h2c floor'), ...script('h2_floor'), h2Upstream!.url], json),
      scenarios: [{ name: H2_FLOOR, h2: { path: GRPC_PATH } }],
      skip: h2Skip,
    },
    {
      name: 'jwtgate h2c auth:none',
      start: jwtgate('jwtgate h2c auth:none', { ...basePolicy, upstreams: h2Upstreams, routes: [grpcRoute('/**', 'none')] }, ['h2c']),
      scenarios: [{ name: H2_NONE, h2: { path: GRPC_PATH } }],
      skip: h2Skip,
    },
  )
  if (rs256) {
    groups.push({
      name: 'jwtgate h2c RS256',
      start: jwtgate(
        'jwtgate h2c RS256',
        {
          ...basePolicy,
          issuers: { bench: { ...rs256.issuer, audiences: [AUDIENCE], algorithms: ['RS256'] } },
          upstreams: h2Upstreams,
          routes: [
            grpcRoute(
              `${GRPC_QUERY_PATH.slice(0, GRPC_QUERY_PATH.lastIndexOf('/'))}/*`,
              { issuers: ['bench'] },
              { token_sources: [{ query: 'access_token' }] },
            ),
            grpcRoute('/**', { issuers: ['bench'] }),
          ],
        },
        ['h2c'],
      ),
      tokens: tokens.get('RS256'),
      scenarios: [
        { name: H2_RS256_1, count: 1, h2: { path: GRPC_PATH, token: 'header' } },
        { name: H2_RS256_1K, count: 1000, h2: { path: GRPC_QUERY_PATH, token: 'query' } },
      ],
      skip: h2Skip,
    })
  }
  if (h2Skip && selected(H2_UPSTREAM))
    groups.push({ name: 'h2c upstream', start: () => Promise.reject(new Error(h2Skip)), scenarios: [{ name: H2_UPSTREAM }], skip: h2Skip })
  const skipped = groups.filter((g) => g.skip && g.scenarios.some((x) => selected(x.name)))
  for (const g of skipped) console.error(`bench: ${g.name} skipped: ${g.skip}`)
  const wanted = groups.filter((g) => !g.skip && g.scenarios.some((x) => selected(x.name)))
  // Started a few at a time and unpinned (module loading is most of the start-up), then pinned.
  const services = await mapLimit(wanted, 3, (g) => g.start())
  // The DPoP row's proofs name the gateway's URL: one set for priming, one per round.
  for (const [i, g] of wanted.entries()) {
    if (!g.dpop) continue
    const htu = services[i]!.url + PATH
    g.tokens = await proofLines(g.dpop.clients, g.dpop.tokens, htu, Math.max(PRIME_MIN, g.dpop.clients.length), 'prime')
    g.roundFiles = []
    for (let round = 0; round < REPEATS; round++) {
      const file = path.join(tmp!, `dpop-round-${round}.txt`)
      writeFileSync(file, (await proofLines(g.dpop.clients, g.dpop.tokens, htu, DPOP_REQUESTS_PER_S * DURATION_S, `round-${round}`)).join('\n') + '\n')
      g.roundFiles.push(file)
    }
    console.error(`bench: ${REPEATS} × ${DPOP_REQUESTS_PER_S * DURATION_S} DPoP proofs signed after ${seconds()} s`)
  }
  const scenarios: Scenario[] = []
  if (selected(UPSTREAM)) scenarios.push({ name: UPSTREAM, service: upstream, upstream })
  if (h2Upstream) scenarios.push({ name: H2_UPSTREAM, service: h2Upstream, upstream: h2Upstream, h2: { path: GRPC_PATH, headers: [] } })
  // How each process is primed: HTTP/1.1 GETs (every token once), or gRPC calls per HTTP/2 row.
  const priming: Array<() => Promise<void>> = []
  if (selected(UPSTREAM)) priming.push(() => prime(upstream))
  if (h2Upstream) priming.push(() => primeH2(h2Upstream, { path: GRPC_PATH }, []))
  wanted.forEach((g, i) => {
    const service = services[i]!
    if (!g.scenarios.some((x) => x.h2)) priming.push(() => prime(service, g.tokens))
    for (const x of g.scenarios) {
      if (!selected(x.name)) continue
      const scenario: Scenario = { name: x.name, service, upstream: x.h2 ? h2Upstream! : upstream, ...(g.roundFiles ? { roundFiles: g.roundFiles } : {}) }
      const tokens = g.tokens?.slice(0, x.count ?? 0) ?? []
      if (x.h2) {
        scenario.h2 = { path: x.h2.path, headers: x.h2.token === 'header' ? [`authorization: Bearer ${tokens[0]}`] : [] }
        if (x.h2.token === 'query') {
          scenario.h2.urlsFile = path.join(tmp!, `urls-${service.pid}-${x.count}.txt`)
          writeFileSync(scenario.h2.urlsFile, tokens.map((t) => `${service.url}${x.h2!.path}?access_token=${t}`).join('\n') + '\n')
        }
        const calls = x.h2
        priming.push(() => primeH2(service, calls, tokens))
      } else if (g.tokens && x.count && !g.dpop) {
        scenario.tokensFile = path.join(tmp!, `tokens-${service.pid}-${x.count}.txt`)
        writeFileSync(scenario.tokensFile, tokens.join('\n') + '\n')
      }
      scenarios.push(scenario)
    }
  })
  console.error(`bench: ${wanted.length + 1 + (h2Upstream ? 1 : 0)} processes for ${scenarios.length} scenarios ready after ${seconds()} s; priming`)
  // Priming runs before pinning, on both CPUs: it is the slowest part of the set-up.
  await mapLimit(priming, 2, (run) => run())
  if (pinned) {
    for (const s of [upstream, ...(h2Upstream ? [h2Upstream] : []), ...services]) pin(s.pid, SERVER_CPU)
    pin(process.pid, LOADGEN_CPU)
  }
  console.error(`bench: primed after ${seconds()} s${pinned ? '' : '; taskset or a second CPU missing: nothing pinned'}`)
  if (PROFILE_DIR) {
    // Start-up and priming (every token's first, uncached verification) are left out this way.
    for (const s of services) {
      const skip = ((performance.now() - s.startedAt) / 1000).toFixed(1)
      console.error(`bench: the rounds of ${s.name}: npx tsx bench/profile.ts ${path.join(PROFILE_DIR, s.name.replace(/\W+/g, '_'))} --skip ${skip}`)
    }
  }

  const estimate = Math.round((scenarios.length + 2) * REPEATS * (DURATION_S + 0.1))
  console.error(`bench: ${REPEATS} rounds × ${scenarios.length} scenarios × ${DURATION_S} s, about ${estimate} s`)
  const runs = new Map<Scenario, RunResult[]>(scenarios.map((s) => [s, []]))
  // The share of the machine's CPU time the hypervisor gave to other guests during each run.
  const stolen: number[] = []
  for (let round = 0; round < REPEATS; round++) {
    // Each round starts at a different scenario, so no scenario always runs first or after the same one.
    const shift = Math.floor((round * scenarios.length) / REPEATS)
    const order = [...scenarios.slice(shift), ...scenarios.slice(0, shift)]
    for (const s of order) {
      s.service.assertAlive()
      s.upstream.assertAlive()
      await sleep(50) // the previous run's connections close
      const cpu0 = cpuMicros(s.service.pid)
      const up0 = cpuMicros(s.upstream.pid)
      const machine0 = machineTicks()
      const cpu = pinned ? LOADGEN_CPU : undefined
      const result = s.h2
        ? await runH2load({
            h2load: h2load!,
            url: s.service.url + s.h2.path,
            urlsFile: s.h2.urlsFile,
            connections: H2_CONNECTIONS,
            streams: H2_STREAMS,
            durationS: DURATION_S,
            headers: s.h2.headers,
            cpu,
          })
        : await runWrk({
            wrk,
            url: s.service.url + PATH,
            connections: CONNECTIONS,
            durationS: DURATION_S,
            tokensFile: s.roundFiles?.[round] ?? s.tokensFile,
            cpu,
          })
      const cpuUs = cpuMicros(s.service.pid) - cpu0
      const up = cpuMicros(s.upstream.pid) - up0
      const machine1 = machineTicks()
      stolen.push((machine1.steal - machine0.steal) / Math.max(1, machine1.total - machine0.total))
      s.service.truncateLog()
      runs
        .get(s)!
        .push({ ...result, round, cpuUsPerReq: cpuUs / result.requests, upstreamCpuUsPerReq: up / result.requests, rssMB: rssBytes(s.service.pid) / 2 ** 20 })
      process.stderr.write(`  round ${round + 1}/${REPEATS} ${s.name.padEnd(30)} ${result.rps.toFixed(0).padStart(7)} req/s\n`)
    }
  }

  // Latency below saturation: the floor and jwtgate (RS256, 1k tokens) paced at about half the
  // floor's throughput, each connection waiting between its requests. The p99 jwtgate adds there
  // is issue 6's latency target.
  const paced: { name: string; rps: number; p50Ms: number; p99Ms: number }[] = []
  const floorScenario = scenarios.find((s) => s.name === FLOOR)!
  const rsScenario = scenarios.find((s) => s.name === scenarioName('RS256', 1000))
  if (rsScenario) {
    const half = median(runs.get(floorScenario)!.map((r) => r.rps)) / 2
    const delayMs = Math.max(1, Math.round((CONNECTIONS * 1000) / half))
    for (const s of [floorScenario, rsScenario]) {
      const results: WrkRun[] = []
      for (let round = 0; round < REPEATS; round++) {
        await sleep(50)
        results.push(
          await runWrk({
            wrk,
            url: s.service.url + PATH,
            connections: CONNECTIONS,
            durationS: DURATION_S,
            tokensFile: s.tokensFile,
            cpu: pinned ? LOADGEN_CPU : undefined,
            delayMs,
          }),
        )
      }
      paced.push({
        name: s.name,
        rps: median(results.map((r) => r.rps)),
        p50Ms: median(results.map((r) => r.p50Ms)),
        p99Ms: median(results.map((r) => r.p99Ms)),
      })
      process.stderr.write(`  paced ${s.name.padEnd(30)} ${paced.at(-1)!.rps.toFixed(0).padStart(7)} req/s\n`)
    }
  }

  const summaries: Summary[] = scenarios.map((s) => {
    const r = runs.get(s)!
    return {
      name: s.name,
      rps: median(r.map((x) => x.rps)),
      p50Ms: median(r.map((x) => x.p50Ms)),
      p99Ms: median(r.map((x) => x.p99Ms)),
      cpuUsPerReq: median(r.map((x) => x.cpuUsPerReq)),
      rssMB: r.reduce((last, x) => (x.round >= last.round ? x : last)).rssMB,
      peakRssMB: peakRssBytes(s.service.pid) / 2 ** 20,
      errors: r.reduce((n, x) => n + Object.values(x.errors).reduce((a, b) => a + b, 0), 0),
      runs: r,
    }
  })
  const revision = gitRevision()
  printTable(summaries, { pinned, revision, steal: stolen.length ? { median: median(stolen), max: Math.max(...stolen) } : undefined })
  for (const g of skipped) console.log(`skipped: ${g.scenarios.map((x) => x.name.slice(3)).join(', ')}: ${g.skip}`)
  comparisons(summaries)
  if (paced.length === 2) {
    const [b, c] = paced as [(typeof paced)[0], (typeof paced)[0]]
    console.log(
      `\npaced at about half the floor's throughput (${b.rps.toFixed(0)} and ${c.rps.toFixed(0)} req/s): ` +
        `p50 ${b.p50Ms.toFixed(2)} / ${c.p50Ms.toFixed(2)} ms, p99 ${b.p99Ms.toFixed(2)} / ${c.p99Ms.toFixed(2)} ms (floor / jwtgate RS256 1k tokens); ` +
        `jwtgate adds ${(c.p99Ms - b.p99Ms).toFixed(2)} ms at p99`,
    )
  }
  if (OUT) {
    const meta = {
      date: new Date().toISOString(),
      revision,
      node: process.version,
      cpus: CPUS,
      pinned,
      durationS: DURATION_S,
      repeats: REPEATS,
      connections: CONNECTIONS,
      h2Connections: H2_CONNECTIONS,
      h2Streams: H2_STREAMS,
      tokenCache: TOKEN_CACHE ?? 'default',
      logLevel: LOG_LEVEL ?? 'default',
      accessLog: ACCESS_LOG ?? 'default',
      nodeFlags: NODE_FLAGS.join(' '),
      imageEnv: IMAGE_ENV,
    }
    writeFileSync(OUT, JSON.stringify({ meta, scenarios: summaries, paced }, null, 2) + '\n')
    console.error(`bench: results written to ${OUT}`)
  }
  console.error(`bench: done in ${seconds()} s`)
}

/** `ENV NODE_OPTIONS=…` of the Dockerfile: how the image runs node. */
function profileArgs(name: string): string[] {
  // A directory per process: each thread (a policy reload runs in a worker) writes its own profile; the
  // largest is the main thread's.
  return PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${path.join(PROFILE_DIR, name.replace(/\W+/g, '_'))}`] : []
}

/**
 * BENCH_ONLY picks scenarios by name. The bases of a protocol, (a) and (b) for HTTP/1.1, (a2) and
 * (b2) for HTTP/2, run with any row of theirs: the ratios need them; (a) and (b) also when
 * BENCH_ONLY names no row at all.
 */
function selected(name: string): boolean {
  if (!ONLY || ONLY.test(name)) return true
  const only = ONLY
  const http1Rows = [NONE, ROUTES_500, ...ALGORITHMS.flatMap((alg) => TOKEN_COUNTS.map((n) => scenarioName(alg, n))), ...EXTRA_RS256]
  if (name === H2_UPSTREAM || name === H2_FLOOR) return H2_ROWS.some((row) => only.test(row))
  if (name === UPSTREAM || name === FLOOR) return http1Rows.some((row) => only.test(row)) || !H2_ROWS.some((row) => only.test(row))
  return false
}

/** The row a row's ÷a or ÷b compares with: its own protocol's upstream or floor. */
function baseOf(rows: Summary[], row: Summary, base: 'a' | 'b'): Summary | undefined {
  const h2 = row.name[1] === '2'
  return rows.find((r) => r.name === (base === 'a' ? (h2 ? H2_UPSTREAM : UPSTREAM) : h2 ? H2_FLOOR : FLOOR))
}

/** How a row compares with another of the same run: the figures issues 5 and 6 ask for. */
function comparisons(rows: Summary[]): void {
  const row = (name: string) => rows.find((r) => r.name === name)
  const pairs: [string, string | undefined, string][] = [
    [ROUTES_500, NONE, 'route matching, 500 routes against 1'],
    [REVOCATION, scenarioName('RS256', 1000), 'revocation, 100k entries against none'],
    [HAPROXY, scenarioName('RS256', 1000), 'HAProxy against jwtgate'],
    [EXPRESS, scenarioName('RS256', 1000), 'express against jwtgate'],
    [DPOP, scenarioName('RS256', 1000), 'DPoP (one ES256 proof checked per request) against bearer'],
  ]
  const lines = pairs.flatMap(([name, base, what]) => {
    const a = row(name)
    const b = base === undefined ? undefined : row(base)
    if (!a || !b) return []
    const rss = name === REVOCATION ? `, peak RSS ${(a.peakRssMB - b.peakRssMB).toFixed(0)} MB more` : ''
    return [`${what}: req/s ×${(a.rps / b.rps).toFixed(3)}, CPU µs/req ×${(a.cpuUsPerReq / b.cpuUsPerReq).toFixed(3)}${rss}`]
  })
  if (lines.length) console.log(['', ...lines].join('\n'))
}

function scenarioName(alg: string, count: number): string {
  return `c  jwtgate ${alg} ${count === 1 ? '1 token' : `${count / 1000}k tokens`}`
}

/** HTTP/2 rows: every token once (at least PRIME_MIN calls), each required to end with grpc-status 0. */
async function primeH2(service: Service, calls: H2Calls, tokens: string[]): Promise<void> {
  const total = Math.max(PRIME_MIN, tokens.length)
  const list = Array.from({ length: total }, (_, i): { path: string; headers: Record<string, string> } => {
    const token = tokens[i % tokens.length]
    if (token === undefined || !calls.token) return { path: calls.path, headers: {} }
    return calls.token === 'header'
      ? { path: calls.path, headers: { authorization: `Bearer ${token}` } }
      : { path: `${calls.path}?access_token=${token}`, headers: {} }
  })
  const failures = await grpcCalls(service.url, list, H2_CONNECTIONS * H2_STREAMS)
  if (failures.length) throw new Error(`${service.name}: ${failures.length} of ${total} priming calls failed, e.g. ${failures[0]}`)
}

/** Sends every token once (at least PRIME_MIN requests) and requires a 200 for each. */
async function prime(service: Service, tokens?: string[]): Promise<void> {
  const pool = new Pool(service.url, { connections: CONNECTIONS, headersTimeout: 10_000, bodyTimeout: 10_000 })
  const total = Math.max(PRIME_MIN, tokens?.length ?? 0)
  let next = 0
  const failures: string[] = []
  const worker = async () => {
    while (next < total) {
      const i = next++
      const line = tokens?.[i % tokens.length]
      const tab = line?.indexOf('\t') ?? -1
      const headers = line === undefined ? {} : tab < 0 ? { authorization: `Bearer ${line}` } : { authorization: line.slice(0, tab), dpop: line.slice(tab + 1) }
      const response = await pool.request({ path: PATH, method: 'GET', headers })
      const body = await response.body.text()
      if (response.statusCode !== 200) failures.push(`${response.statusCode} ${body.slice(0, 300)}`)
    }
  }
  try {
    await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  } finally {
    await pool.close()
  }
  if (failures.length) throw new Error(`${service.name}: ${failures.length} of ${total} priming requests failed, e.g. ${failures[0]}`)
}

function printTable(rows: Summary[], info: { pinned: boolean; revision: string; steal: { median: number; max: number } | undefined }): void {
  // The HTTP/2 rows (a2, b2, c2) as a block after the others.
  rows = [...rows.filter((r) => r.name[1] !== '2'), ...rows.filter((r) => r.name[1] === '2')]
  const fixed = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : '-')
  const a = (r: Summary) => baseOf(rows, r, 'a') ?? { rps: Number.NaN }
  const b = (r: Summary) => baseOf(rows, r, 'b') ?? { rps: Number.NaN, cpuUsPerReq: Number.NaN }
  const header = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'RSS MB', 'peak RSS MB', 'req/s ÷a', 'req/s ÷b', 'CPU ÷b', 'errors']
  const lines = rows.map((r) => [
    r.name,
    fixed(r.rps, 0),
    fixed(r.p50Ms, 2),
    fixed(r.p99Ms, 2),
    fixed(r.cpuUsPerReq, 1),
    fixed(r.rssMB, 0),
    fixed(r.peakRssMB, 0),
    fixed(r.rps / a(r).rps, 2),
    fixed(r.rps / b(r).rps, 2),
    fixed(r.cpuUsPerReq / b(r).cpuUsPerReq, 2),
    r.errors ? String(r.errors) : '',
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const format = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  console.log('')
  // First: the runtime moves every figure (issue 12's table, Node 20 against 24 against 26).
  console.log(`Node.js ${process.version} (${process.execPath}) runs every Node process here: jwtgate, the floor, the upstream, the express peer`)
  console.log(
    `How to read this: medians of ${REPEATS} runs × ${DURATION_S} s, ${CONNECTIONS} connections, wrk${info.pinned ? ' on CPU 0, proxy + upstream sharing CPU 1' : ' unpinned'}; ` +
      `CPU µs/req and RSS are the proxy process's alone (row a: the upstream's), RSS after the row's last run and at its peak (the rows of one algorithm share one gateway, so one peak); ÷a = share of the bare upstream's throughput, ÷b = relative to the bare Node proxy (CPU ÷b > 1: costlier per request); ` +
      `token rows are after priming, so rotating tokens are cache hits unless BENCH_TOKEN_CACHE=0. Noisy machine: differences under ~10% are noise.`,
  )
  if (rows.some((r) => r.name[1] === '2'))
    console.log(
      `HTTP/2 rows (a2, b2, c2): unary gRPC calls over h2c to an h2c upstream, h2load, ${H2_CONNECTIONS} connections × ${H2_STREAMS} streams; ` +
        `their ÷a and ÷b are against a2 and b2 (the fastify http2 forwarder); the 1k row's tokens are in ?access_token= (h2load sends one header set).`,
    )
  console.log(
    `jwtgate ${info.revision} from dist/, token cache ${TOKEN_CACHE ?? 'default'}, log level ${LOG_LEVEL ?? 'default'}, access log ${ACCESS_LOG ?? 'default'}` +
      `${NODE_FLAGS.length ? `, node ${NODE_FLAGS.join(' ')}` : ''}` +
      (IMAGE_ENV_TEXT ? `, environment ${IMAGE_ENV_TEXT}` : ''),
  )
  if (MISSING_PRELOADS.length)
    console.log(
      `NOT the image's allocator: ${MISSING_PRELOADS.join(', ')} is not installed here (apt-get install -y libmimalloc2.0), so jwtgate ran on glibc's malloc and its RSS is not the image's`,
    )
  // Time stolen by the hypervisor runs nothing of ours but stretches every latency and moves the
  // CPU figures from run to run: above a few per cent, read the ratios with care.
  if (info.steal)
    console.log(
      `CPU steal (other guests of this machine's host) during the runs: median ${(info.steal.median * 100).toFixed(1)}%, at most ${(info.steal.max * 100).toFixed(1)}%`,
    )
  console.log('')
  console.log(format(header))
  console.log(format(widths.map((w) => '-'.repeat(w))))
  for (const l of lines) console.log(format(l))
  if (rows.some((r) => r.errors)) console.log('\nerrors: socket errors or answers >= 400 during the runs; those rows do not measure what they say.')
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

function gitRevision(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', timeout: 5000 }).trim()
    return git('rev-parse', '--short', 'HEAD') + (git('status', '--porcelain', '--', 'src', 'bin') ? ' + uncommitted changes' : '')
  } catch {
    return 'unknown revision'
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

let cleaning: Promise<void> | undefined
let stopping = false
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await killAll(PROFILE_DIR ? 15_000 : undefined) // writing a profile takes a while
    await Promise.all(issuers.map((issuer) => issuer.close()))
    if (tmp) rmSync(tmp, { recursive: true, force: true })
  })()
  return cleaning
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.on(signal, () => {
    stopping = true
    console.error(`\nbench: ${signal}, stopping`)
    void cleanup().finally(() => process.exit(code))
  })
}
// Whatever happens, no child outlives us and no temp dir stays behind.
process.on('exit', () => {
  killAllNow()
  if (tmp) rmSync(tmp, { recursive: true, force: true })
})

try {
  await main()
} catch (err) {
  // After a signal, children dying under us is expected: no second message for that.
  if (!stopping) console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`)
  process.exitCode = 1
} finally {
  await cleanup()
}
