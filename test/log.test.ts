// The process logger: the access log's hand-written lines match pino's, a cluster worker's
// lines carry its number, and processes sharing standard output write atomically.
import t from 'tap'
import pino from 'pino'
import { accessLogger, createLogger, LazyChildLogger, LineBatcher } from '../src/log.js'
import { LogCapture } from './support/harness.js'

const fields = {
  requestId: 'r1', method: 'GET', path: '/x', route: 'routes[0] /x', upstream: 'orders', status: 200, ms: 1.5,
  issuer: undefined, sub: undefined, reason: undefined, report: undefined, reportStatus: undefined, reportReason: undefined, websocket: undefined,
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

t.test('one process: no worker field', async (t) => {
  const capture = new LogCapture()
  accessLogger(createLogger('info', capture))(fields)
  t.notOk('worker' in capture.lines[0]!)
})

t.test('a LineBatcher hands over whole lines, never more than maxBytes at a time, and the rest after its delay', async (t) => {
  const writes: string[] = []
  const batcher = new LineBatcher({ write: (s: string) => void writes.push(s) }, 4096, 50)
  const lines = Array.from({ length: 300 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(i % 150)}","é":"ü"}\n`)
  for (const line of lines) batcher.write(line)
  t.ok(writes.length > 1, 'full batches went out at once')
  const pendingBefore = lines.join('').length - writes.join('').length
  t.ok(pendingBefore > 0, 'a partial batch waits')
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.equal(writes.join(''), lines.join(''), 'every line, in order, after the delay')
  for (const w of writes) {
    t.ok(Buffer.byteLength(w) <= 4096, `a write of ${Buffer.byteLength(w)} bytes`)
    t.ok(w.endsWith('\n'), 'whole lines only')
  }
})

t.test('processes sharing standard output write at most PIPE_BUF (4096) bytes at a time', async (t) => {
  const batcherOf = (logger: pino.Logger) => (logger as unknown as Record<symbol, LineBatcher>)[pino.symbols.streamSym]!
  for (const options of [{ worker: 1 }, { sharedStdout: true }]) {
    const batcher = batcherOf(createLogger('silent', undefined, options))
    t.ok(batcher instanceof LineBatcher, JSON.stringify(options))
    t.equal(batcher.maxBytes, 4096, 'batches of at most PIPE_BUF')
    t.equal((batcher.out as unknown as { maxWrite: number }).maxWrite, 4096, 'and sonic-boom joins queued batches only up to PIPE_BUF')
  }
  t.equal(batcherOf(createLogger('silent')).maxBytes, 16000, 'one process keeps its 16 KB batches')
})

t.test("a request's logger makes its pino child only for its first line, with the request's bindings", async (t) => {
  const capture = new LogCapture()
  const parent = createLogger('info', capture)
  let children = 0
  const child = parent.child.bind(parent)
  parent.child = ((bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => (children++, child(bindings, options))) as unknown as typeof parent.child
  const log = new LazyChildLogger(parent, { request_id: 'r9' }, {})
  t.equal(log.level, 'info')
  t.equal(children, 0, 'no child yet')
  log.warn({ upstream: 'orders' }, 'upstream request failed')
  log.error('again')
  t.equal(children, 1, 'one child, made for the first line')
  t.match(capture.lines, [{ level: 40, request_id: 'r9', upstream: 'orders', msg: 'upstream request failed' }, { level: 50, request_id: 'r9', msg: 'again' }])
})
