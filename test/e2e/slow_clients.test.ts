// Slow clients cannot starve an upstream or the listener (issue 16, item 1; item 15's connection
// cap): stalled uploads get 408 and free their upstream connection, a request waiting for a busy
// upstream gets 503 within its timeout, a response the client does not read is cut and frees
// its upstream connection, slow header sections get 408, and connections are capped, per
// address and in all. Real sockets on 127.0.0.1; the limits are small so each case takes about
// a second; no wall-clock assertions (every wait is bounded and says what it waited for).
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import { bearer, eventually, gateway, get, issuer, sleep, type LogCapture } from '../support/harness.js'
import type { DevIssuer } from '../../src/devkit/dev_issuer.js'
import type { RunningGateway } from '../../src/server.js'

interface Teardown {
  teardown(fn: () => unknown): void
}
type Gateway = RunningGateway & { logs: LogCapture }
const TOKEN_CLAIMS = { sub: 'alice', aud: 'orders-api' }

/** An upstream that reads each body whole and answers with its length; /big streams 64 MiB; counts its open connections. */
async function countingUpstream(t: Teardown) {
  const state = { open: 0, bigStarted: false, bigEnded: false, bigClosed: false }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.endsWith('/big')) {
      let sent = 0
      const chunk = Buffer.alloc(64 * 1024, 'x')
      const body = new Readable({
        read() {
          if (sent >= 1024) return this.push(null)
          sent++
          this.push(chunk)
        },
      })
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      state.bigStarted = true
      res.on('finish', () => {
        state.bigEnded = true
      })
      res.on('close', () => {
        state.bigClosed = true
      })
      body.pipe(res)
      return
    }
    let length = 0
    req.on('data', (d: Buffer) => {
      length += d.length
    })
    req.on('end', () => res.end(JSON.stringify({ length })))
  })
  server.on('connection', (socket: Socket) => {
    state.open++
    socket.on('close', () => state.open--)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((r) => server.close(() => r(undefined)))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, state }
}

function yaml(idp: DevIssuer, upstreamUrl: string, upstream: string, limits: string): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp: { issuer: ${idp.url}, jwks_uri: ${idp.jwksUri}, audiences: [orders-api], algorithms: [RS256] }
upstreams:
  orders: { url: "${upstreamUrl}", ${upstream} }
limits: { ${limits} }
routes:
  - { path: /public/**, upstream: orders, auth: none }
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
`
}

/** A raw client connection that keeps what it receives. */
interface Raw {
  socket: Socket
  received(): string
  closed: Promise<void>
  isClosed(): boolean
}

async function open(port: number, t: Teardown): Promise<Raw> {
  const socket = connect(port, '127.0.0.1')
  let data = ''
  let closed = false
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => {
    data += d
  })
  socket.on('error', () => {})
  const whenClosed = new Promise<void>((r) => socket.on('close', () => r()))
  void whenClosed.then(() => {
    closed = true
  })
  t.teardown(() => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return { socket, received: () => data, closed: whenClosed, isClosed: () => closed }
}

/** A POST that announces a body and sends only its first bytes. */
async function stalledUpload(port: number, t: Teardown, target = '/public/upload'): Promise<Raw> {
  const raw = await open(port, t)
  raw.socket.write(`POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 50000\r\n\r\n${'x'.repeat(100)}`)
  return raw
}

const statusOf = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
const errorIn = (text: string) => /"error":"([a-z_]+)"/.exec(text)?.[1]

async function counter(gw: Gateway, name: string, labels: Record<string, string>): Promise<number> {
  const metric = gw.metrics.registry.getSingleMetric(name)
  if (!metric) return 0
  const { values } = await metric.get()
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0)
}

t.test('stalled uploads on a public route are cut (408) and do not starve an authenticated request', async (t) => {
  const idp = await issuer(t)
  const up = await countingUpstream(t)
  const gw = await gateway(
    t,
    yaml(idp, up.url, 'timeout: 5s, connections: 4', 'min_body_rate: 1000, body_rate_window: 400ms, request_timeout: 30s, send_timeout: 30s'),
  )
  const stalled = await Promise.all(Array.from({ length: 6 }, () => stalledUpload(gw.port, t)))
  await eventually('the stalled uploads hold every upstream connection', 3000, () => up.state.open === 4)

  const served = await get(`${gw.url}/api/orders`, bearer(idp.sign(TOKEN_CLAIMS)), { signal: AbortSignal.timeout(8000) })
  t.equal(served.status, 200, 'the authenticated request is served, not left waiting behind the stalled uploads')

  await eventually('every stalled upload is answered', 5000, () => stalled.every((s) => statusOf(s.received()) !== 0))
  for (const s of stalled) {
    t.equal(statusOf(s.received()), 408)
    t.equal(errorIn(s.received()), 'request_timeout')
    t.match(s.received(), /\r\nconnection: close\r\n/i)
  }
  t.ok((await counter(gw, 'jwtgate_client_timeouts_total', { kind: 'body_rate' })) >= 6, 'counted as body_rate timeouts')

  // A body that keeps coming at the rate passes, however long it takes.
  const steady = await open(gw.port, t)
  steady.socket.write('POST /public/steady HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n')
  for (let i = 0; i < 6; i++) {
    steady.socket.write('y'.repeat(500))
    await sleep(150)
  }
  await steady.closed
  t.equal(statusOf(steady.received()), 200)
  t.match(steady.received(), /\{"length":3000\}/)
})

t.test('a request waiting for a busy upstream gets 503 upstream_busy within the upstream timeout', async (t) => {
  const idp = await issuer(t)
  const up = await countingUpstream(t)
  // No minimum rate: the stalled upload keeps the only connection.
  const gw = await gateway(t, yaml(idp, up.url, 'timeout: 500ms, connections: 1', 'min_body_rate: 0, request_timeout: 30s'))
  const stalled = await stalledUpload(gw.port, t)
  await eventually('the stalled upload holds the connection', 3000, () => up.state.open === 1)

  const busy = await get(`${gw.url}/public/other`, {}, { signal: AbortSignal.timeout(8000) })
  t.equal(busy.status, 503)
  t.equal(busy.json.error, 'upstream_busy')
  t.ok(busy.headers.get('retry-after'))
  t.equal(await counter(gw, 'jwtgate_upstream_queue_timeouts_total', { upstream: 'orders' }), 1)

  stalled.socket.destroy()
  await eventually('the upstream serves again once the connection is free', 3000, async () => (await get(`${gw.url}/public/again`)).status === 200)
})

t.test('a client that never reads a large response is cut, and its upstream connection is freed', async (t) => {
  const idp = await issuer(t)
  const up = await countingUpstream(t)
  const gw = await gateway(t, yaml(idp, up.url, 'timeout: 5s, connections: 1', 'send_timeout: 500ms'))
  const reader = await open(gw.port, t)
  reader.socket.pause()
  reader.socket.write('GET /public/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await eventually('the upstream starts its answer', 5000, () => up.state.bigStarted)

  const next = await get(`${gw.url}/public/small`, {}, { signal: AbortSignal.timeout(8000) })
  t.equal(next.status, 200, 'the only upstream connection was freed for the next request')
  t.ok(up.state.bigClosed && !up.state.bigEnded, 'the upstream response was aborted')
  t.equal(reader.received(), '', 'the client never read anything')
  t.equal(await counter(gw, 'jwtgate_client_timeouts_total', { kind: 'send' }), 1)
})

t.test('a header section or a request that never ends gets 408 request_timeout', async (t) => {
  const idp = await issuer(t)
  const up = await countingUpstream(t)
  const gw = await gateway(t, yaml(idp, up.url, 'timeout: 5s', 'headers_timeout: 300ms, request_timeout: 800ms, min_body_rate: 0'))

  const headers = await open(gw.port, t)
  headers.socket.write('GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\n')
  const body = await stalledUpload(gw.port, t)
  await eventually('both connections are answered and closed', 6000, () => headers.isClosed() && body.isClosed())
  for (const raw of [headers, body]) {
    t.equal(statusOf(raw.received()), 408)
    t.equal(errorIn(raw.received()), 'request_timeout')
  }
  t.equal(await counter(gw, 'jwtgate_client_timeouts_total', { kind: 'headers' }), 1)
  t.equal(await counter(gw, 'jwtgate_client_timeouts_total', { kind: 'request' }), 1)
})

t.test('client connections are capped per address and in all', async (t) => {
  const idp = await issuer(t)
  const up = await countingUpstream(t)

  t.test('per address', async (t) => {
    const gw = await gateway(t, yaml(idp, up.url, 'timeout: 5s', 'max_connections_per_address: 3'))
    const kept = [await open(gw.port, t), await open(gw.port, t), await open(gw.port, t)]
    const refused = await open(gw.port, t)
    await eventually('the fourth connection from the address is closed', 3000, () => refused.isClosed())
    t.equal(refused.received(), '', 'closed without an answer')
    t.equal(await counter(gw, 'jwtgate_connections_refused_total', { reason: 'per_address' }), 1)
    kept[0]!.socket.write('GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    await kept[0]!.closed
    t.equal(statusOf(kept[0]!.received()), 200, 'the connections within the cap are served')
    const again = await open(gw.port, t)
    again.socket.write('GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    await again.closed
    t.equal(statusOf(again.received()), 200, 'a closed connection makes room')
  })

  t.test('in all', async (t) => {
    const gw = await gateway(t, yaml(idp, up.url, 'timeout: 5s', 'max_connections: 2, max_connections_per_address: 0'))
    await open(gw.port, t)
    await open(gw.port, t)
    const refused = await open(gw.port, t)
    await eventually('the third connection is closed', 3000, () => refused.isClosed())
    t.equal(await counter(gw, 'jwtgate_connections_refused_total', { reason: 'max_connections' }), 1)
  })
})
