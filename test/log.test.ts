// The process logger: the access log's hand-written lines match pino's, a cluster worker's
// lines carry its number, and processes sharing standard output write atomically.
import t from 'tap'
import pino from 'pino'
import { accessLogger, createLogger } from '../src/log.js'
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

t.test('processes sharing standard output write at most PIPE_BUF (4096) bytes at a time', async (t) => {
  const streamOf = (logger: pino.Logger) => (logger as unknown as Record<symbol, { maxWrite: number; minLength: number }>)[pino.symbols.streamSym]!
  for (const options of [{ worker: 1 }, { sharedStdout: true }]) {
    const stream = streamOf(createLogger('silent', undefined, options))
    t.equal(stream.maxWrite, 4096, JSON.stringify(options))
    t.ok(stream.minLength < 4096)
  }
  t.equal(streamOf(createLogger('silent')).minLength, 16000, 'one process keeps its 16 KB batches')
})
