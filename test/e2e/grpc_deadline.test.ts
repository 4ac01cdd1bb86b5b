// A route's `max_grpc_timeout` (Envoy's max_grpc_timeout): a gRPC call's deadline longer than the
// cap is cut to it, at the gateway and for the upstream, which reads the cut grpc-timeout;
// shorter deadlines, calls without one and routes with the cap off are left alone. grpc-js on
// both sides (test/support/grpc.ts); the deadline the upstream saw is what its server read from
// grpc-timeout, not a time measured by the test.
import t from 'tap'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { h2Request, h2Session } from '../support/h2.js'
import { eventually, gateway } from '../support/harness.js'
import { echoClient, grpc, say, startGrpcUpstream, withToken, type EchoClient } from '../support/grpc.js'

/** A node:http2 gRPC upstream that answers every call with status 0 after 200 ms, recording the grpc-timeout it read. */
async function slowRawUpstream(t: { teardown(fn: () => unknown): void }): Promise<{ url: string; timeouts: string[] }> {
  const timeouts: string[] = []
  const server = http2.createServer()
  server.on('stream', (stream, headers) => {
    timeouts.push(String(headers['grpc-timeout']))
    stream.resume()
    setTimeout(() => {
      if (stream.closed) return
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
      stream.end()
    }, 200)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, timeouts }
}

t.test('max_grpc_timeout cuts a longer deadline, for the gateway and the upstream', async (t) => {
  const up = await startGrpcUpstream(t)
  const raw = await slowRawUpstream(t)
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0, protocols: [h2c] }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  echo: { url: "${up.url}", protocol: h2c, timeout: 2s }
  raw: { url: "${raw.url}", protocol: h2c, timeout: 2s }
routes:
  - { path: /demo.Echo/Say, upstream: echo, grpc: true, auth: none, max_grpc_timeout: 500ms, host: capped }
  - { path: /demo.Echo/Say, upstream: echo, grpc: true, auth: none, max_grpc_timeout: 0, host: uncapped }
  - { path: /demo.Echo/Say, upstream: echo, grpc: true, auth: none }
  - { path: /raw.Echo/Say, upstream: raw, grpc: true, auth: none, max_grpc_timeout: 0 }
`,
  )
  const address = `127.0.0.1:${gw.port}`
  const capped = echoClient(t, address, { 'grpc.default_authority': 'capped' })
  const uncapped = echoClient(t, address, { 'grpc.default_authority': 'uncapped' })
  const defaults = echoClient(t, address)
  const call = (c: EchoClient, text: string, deadlineInMs?: number) =>
    say(c, { text }, withToken(undefined), deadlineInMs === undefined ? {} : { deadline: Date.now() + deadlineInMs })

  t.test('a 30 s deadline on a route capped at 500 ms: the upstream reads 500 ms, and the gateway ends the call at it', async (t) => {
    const { err } = await call(capped, 'sleep:5000', 30_000)
    t.equal(err?.code, grpc.status.DEADLINE_EXCEEDED)
    t.equal(err?.details, 'deadline_exceeded', "the gateway's answer, not the client's own deadline (which would say 'Deadline exceeded …')")
    const seen = up.calls.at(-1)!
    t.ok(seen.deadlineMs <= 500, `the upstream's deadline was cut (${Math.round(seen.deadlineMs)} ms)`)
    await eventually('the upstream call is cancelled', 5000, () => seen.cancelled)
  })

  t.test('a deadline within the cap passes unchanged', async (t) => {
    const { err, res } = await call(capped, 'quick', 400)
    t.error(err)
    t.equal(res?.text, 'quick')
    // An allowed call whose deadline is under the cap: the upstream reads the client's own (at most 400 ms).
    t.ok(up.calls.at(-1)!.deadlineMs <= 400)
  })

  t.test('a call without a deadline is not given one', async (t) => {
    const { err } = await call(capped, 'none')
    t.error(err)
    t.equal(up.calls.at(-1)!.deadlineMs, Number.POSITIVE_INFINITY)
  })

  t.test('max_grpc_timeout: 0 leaves a long deadline alone', async (t) => {
    const { err } = await call(uncapped, 'long', 30_000)
    t.error(err)
    t.ok(up.calls.at(-1)!.deadlineMs > 10_000, 'the upstream read the client’s 30 s')
  })

  t.test('a deadline past what a timer holds (30 days) does not end the call at once', async (t) => {
    // Node fires a setTimeout beyond 2^31-1 ms after 1 ms: the call was ended as soon as it began.
    // (grpc-js's server has the same flaw, so the upstream here is a node:http2 one.)
    const res = await h2Request(
      h2Session(t, gw.url),
      {
        ':method': 'POST',
        ':path': '/raw.Echo/Say',
        ':authority': 'uncapped',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': '720H',
      },
      Buffer.alloc(5),
    )
    t.equal(res.trailers['grpc-status'], '0', 'answered by the upstream after its 200 ms')
    t.equal(raw.timeouts.at(-1), '720H', 'the deadline passed on unchanged')
  })

  t.test('by default (1h) a 2-hour deadline is cut to an hour', async (t) => {
    const { err } = await call(defaults, 'default', 2 * 3_600_000)
    t.error(err)
    const seen = up.calls.at(-1)!.deadlineMs
    t.ok(seen <= 3_600_000 && seen > 3_000_000, `the upstream read an hour (${Math.round(seen)} ms)`)
  })
})
