// Tracing with `workers: 2`: each worker process exports its own spans (its number and pid in the
// resource), and the graceful shutdown sends what each still holds: the batch delay here is ten
// minutes, so every span the receiver gets came with a worker's shutdown.
import t from 'tap'
import { serveChild } from '../support/cli.js'
import { tempFile, upstream, fresh } from '../support/harness.js'
import { SpanKind, startOtlpReceiver } from '../support/otlp_receiver.js'

t.test('each worker exports its own spans, and its shutdown flushes them', async (t) => {
  const receiver = await startOtlpReceiver()
  t.teardown(() => receiver.close())
  const up = await upstream(t)
  const file = tempFile(
    'policy.yaml',
    `version: 1
workers: 2
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drain_delay: 200ms, timeout: 10s }
upstreams:
  orders: { url: "${up.url}" }
routes:
  - { name: open, path: /open/**, upstream: orders, auth: none }
`,
  )
  const { proc, out, exited } = await serveChild(t, file, {
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '600000' },
    ready: /"all workers listening"/,
  })
  const url = /jwtgate listening on (\S+?)"/.exec(out())![1]!
  const traceId = '5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a'
  // 24 connections: that all of them land on one worker has odds of 2^-23.
  const REQUESTS = 24
  for (let i = 0; i < REQUESTS; i++)
    t.equal((await fresh(`${url}/open/${i}`, { traceparent: `00-${traceId}-${String(i + 1).padStart(16, '0')}-01` })).status, 200)
  t.same(receiver.spans, [], 'nothing exported while running: the batch waits')

  proc.kill('SIGTERM')
  t.equal(await exited, 0)
  const servers = receiver.spans.filter((s) => s.traceId === traceId && s.kind === SpanKind.SERVER)
  t.equal(servers.length, REQUESTS, 'every request span arrived, sent by the shutdowns')
  t.equal(receiver.spans.filter((s) => s.traceId === traceId && s.kind === SpanKind.CLIENT).length, REQUESTS)
  t.same([...new Set(servers.map((s) => s.resource['jwtgate.worker']))].sort(), [1, 2], 'from both workers')
  t.equal(new Set(servers.map((s) => s.resource['process.pid'])).size, 2, 'two processes')
  t.ok(
    servers.every((s) => s.name === 'GET open'),
    'named after the route',
  )
})
