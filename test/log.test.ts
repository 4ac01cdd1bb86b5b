// The process logger: the access log's hand-written lines match pino's, a cluster worker's
// lines carry its number, and processes sharing standard output write atomically.
import t from 'tap'
import pino from 'pino'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { accessLogger, createLogger, LazyChildLogger } from '../src/log.js'
import type { BatchedOutput } from '../src/log_output.js'
import { LogCapture } from './support/harness.js'

const fields = {
  requestId: 'r1',
  method: 'GET',
  path: '/x',
  route: '/x',
  upstream: 'orders',
  status: 200,
  ms: 1.5,
  issuer: undefined,
  sub: undefined,
  reason: undefined,
  report: undefined,
  reportStatus: undefined,
  reportReason: undefined,
  websocket: undefined,
  client: undefined,
  userAgent: undefined,
  requestBytes: undefined,
  responseBytes: undefined,
  upstreamStatus: undefined,
  upstreamMs: undefined,
  traceId: undefined,
  spanId: undefined,
} as const

t.test("a worker's lines, pino's and the access log's, carry its number after service", async (t) => {
  const capture = new LogCapture()
  const logger = createLogger('info', capture, { worker: 2 })
  logger.child({ listener: 'x' }).info('hello')
  accessLogger(logger.child({ component: 'proxy' }))(fields)
  t.equal(capture.lines.length, 2)
  for (const line of capture.lines) t.same(Object.keys(line).slice(0, 4), ['level', 'time', 'service', 'worker'])
  t.match(capture.lines[1], { worker: 2, request_id: 'r1', status: 200, msg: 'request' })
})

t.test('every field of an access line is escaped, whatever it holds; names reuse their fragment', async (t) => {
  const capture = new LogCapture()
  const write = accessLogger(createLogger('info', capture))
  // request_id is written unescaped only when it matches the request-id pattern; route names are
  // written from a cached fragment, built escaped the first time and reused the second.
  const odd = { ...fields, requestId: 'id"}\n{"x', route: 'r"1\\', upstream: 'up\u2028', method: 'GE"T', sub: '"\n', client: 'a"b', userAgent: 'ua"}\n' }
  write(odd)
  write(odd)
  t.equal(capture.lines.length, 2, 'two lines, each valid JSON (LogCapture parses them)')
  for (const line of capture.lines) {
    t.match(line, {
      request_id: odd.requestId,
      route: odd.route,
      upstream: odd.upstream,
      method: odd.method,
      sub: odd.sub,
      client_address: 'a"b',
      user_agent: 'ua"}\n',
    })
  }
})

t.test('one process: no worker field', async (t) => {
  const capture = new LogCapture()
  accessLogger(createLogger('info', capture))(fields)
  t.notOk('worker' in capture.lines[0]!)
})

/**
 * Runs `body` as a script whose standard output is a pipe (the logger's own, fd 1), with
 * `createLogger`, `accessLogger` and `drainLog` imported from src/log.ts: its exit status and the
 * JSON lines it wrote.
 */
function runLogScript(body: string): { status: number | null; stderr: string; lines: Array<Record<string, unknown>> } {
  const script = path.join(mkdtempSync(path.join(tmpdir(), 'jwtgate-log-')), 'script.ts')
  writeFileSync(
    script,
    `import { accessLogger, createLogger, drainLog } from ${JSON.stringify(fileURLToPath(new URL('../src/log.ts', import.meta.url)))}\n${body}`,
  )
  const child = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 })
  const lines = child.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  return { status: child.status, stderr: child.stderr, lines }
}

t.test('lines logged just before the process exits reach standard output, in order', async (t) => {
  // Fewer than a batch, and no time for the periodic flush: only the exit flush writes them.
  const { status, stderr, lines } = runLogScript(`const logger = createLogger('info')
logger.info('first')
accessLogger(logger)({ requestId: 'r1', method: 'GET', path: '/x', route: undefined, upstream: undefined, status: 200, ms: 1, issuer: undefined, sub: 'é', reason: undefined, report: undefined, reportStatus: undefined, reportReason: undefined, websocket: undefined })
logger.warn('last')
process.exit(3)
`)
  t.equal(status, 3, stderr)
  t.match(lines, [{ msg: 'first' }, { msg: 'request', request_id: 'r1', sub: 'é' }, { msg: 'last' }])
})

t.test("lines dropped for a full output are reported in the logger's own line format", async (t) => {
  // 20,000 lines of 1 KB logged in one synchronous loop: no write completes meanwhile, so past
  // the 16 MB the output holds, lines are dropped.
  const { status, stderr, lines } = runLogScript(`const logger = createLogger('info', undefined, { worker: 2, time: 'iso', levelLabel: true })
for (let i = 0; i < 20000; i++) logger.info({ i, pad: 'x'.repeat(1000) }, 'filler')
setTimeout(async () => {
  logger.info('after')
  // What process.exit() would cut short: a batch still being written by the thread pool.
  await drainLog(logger, 10_000)
  process.exit(0)
}, 200)
`)
  t.equal(status, 0, stderr)
  const fillers = lines.filter((l) => l.msg === 'filler').length
  const report = lines.find((l) => l.dropped_lines !== undefined)
  t.ok(fillers < 20000, `lines were dropped (${fillers} written)`)
  t.match(report, { level: 'warn', worker: 2, service: 'jwtgate', msg: 'log lines dropped: standard output did not keep up' })
  t.match(report?.time, /^\d{4}-\d\d-\d\dT/, 'ISO time, as log.time asks')
  t.equal(report?.dropped_lines, 20000 - fillers, 'the count is every line missing')
  t.equal(lines.at(-1)?.msg, 'after', 'logging goes on')
})

t.test('processes sharing standard output write at most PIPE_BUF (4096) bytes at a time', async (t) => {
  const outputOf = (logger: pino.Logger) => (logger as unknown as Record<symbol, BatchedOutput>)[pino.symbols.streamSym]!.options
  for (const options of [{ worker: 1 }, { sharedStdout: true }]) {
    t.equal(outputOf(createLogger('silent', undefined, options)).batchBytes, 4096, JSON.stringify(options))
  }
  t.equal(outputOf(createLogger('silent')).batchBytes, 64 * 1024, 'one process writes batches of up to 64 KB')
})

t.test("a request's logger makes its pino child only for its first line, with the request's bindings", async (t) => {
  const capture = new LogCapture()
  const parent = createLogger('info', capture)
  let children = 0
  const child = parent.child.bind(parent)
  parent.child = ((bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => {
    children++
    return child(bindings, options)
  }) as unknown as typeof parent.child
  const log = new LazyChildLogger(parent, { request_id: 'r9' }, {})
  t.equal(log.level, 'info')
  t.equal(children, 0, 'no child yet')
  log.warn({ upstream: 'orders' }, 'upstream request failed')
  log.error('again')
  t.equal(children, 1, 'one child, made for the first line')
  t.match(capture.lines, [
    { level: 40, request_id: 'r9', upstream: 'orders', msg: 'upstream request failed' },
    { level: 50, request_id: 'r9', msg: 'again' },
  ])
})
