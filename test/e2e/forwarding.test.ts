// The forwarder (src/gateway/forward.ts, src/proxy/upstream_exchange.ts) end to end: aborts both
// ways, backpressure from a client that does not read, what an upstream's answer may not carry
// to the client, and an answer the gateway cannot pass on. Real sockets on 127.0.0.1; every wait
// is bounded and says what it waited for.
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { eventually, gateway, rawGet, rawRequest } from '../support/harness.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const MiB = 1024 * 1024

/** An upstream whose handlers the tests set per path; it records how each exchange ended. */
async function scriptedUpstream(t: Teardown) {
  const seen = new Map<string, { requestClosed: boolean; responseFinished: boolean; responseClosed: boolean; bytesPushed: number }>()
  const routes = new Map<string, (req: IncomingMessage, res: ServerResponse, note: typeof seen extends Map<string, infer V> ? V : never) => void>()
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]!
    const note = { requestClosed: false, responseFinished: false, responseClosed: false, bytesPushed: 0 }
    seen.set(path, note)
    req.on('close', () => {
      note.requestClosed = true
    })
    res.on('finish', () => {
      note.responseFinished = true
    })
    res.on('close', () => {
      note.responseClosed = true
    })
    const handler = routes.get(path)
    if (handler) handler(req, res, note)
    else res.end('ok')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((r) => server.close(() => r(undefined)))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, routes, seen }
}

function yaml(upstreamUrl: string): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  orders: { url: "${upstreamUrl}", timeout: 30s }
limits: { send_timeout: 60s }
routes:
  - { path: /public/**, upstream: orders, auth: none }
`
}

/** A client connection that keeps what it receives, as bytes. */
async function open(port: number, t: Teardown) {
  const socket = connect(port, '127.0.0.1')
  let received = 0
  let text = ''
  let closed = false
  socket.on('data', (d: Buffer) => {
    received += d.length
    if (text.length < 4096) text += d.toString('latin1')
  })
  socket.on('error', () => {})
  socket.on('close', () => {
    closed = true
  })
  t.teardown(() => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return { socket, received: () => received, text: () => text, isClosed: () => closed }
}

t.test('aborts both ways', async (t) => {
  const up = await scriptedUpstream(t)
  const gw = await gateway(t, yaml(up.url))

  t.test('a client that goes away before the answer aborts the upstream request', async (t) => {
    up.routes.set('/public/slow', () => {
      // Never answers: only the gateway closing the connection ends it.
    })
    const client = await open(gw.port, t)
    client.socket.write('GET /public/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    await eventually('the upstream has the request', 3000, () => up.seen.has('/public/slow'))
    client.socket.destroy()
    await eventually('the upstream request is aborted', 3000, () => up.seen.get('/public/slow')!.responseClosed)
    t.notOk(up.seen.get('/public/slow')!.responseFinished, 'its answer was never finished')
  })

  t.test('a client that goes away mid-body aborts the upstream response', async (t) => {
    up.routes.set('/public/endless', (_req, res, note) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const chunk = Buffer.alloc(16 * 1024, 'x')
      const timer = setInterval(() => {
        note.bytesPushed += chunk.length
        res.write(chunk)
      }, 10)
      res.on('close', () => clearInterval(timer))
    })
    const client = await open(gw.port, t)
    client.socket.write('GET /public/endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    await eventually('the client receives part of the body', 3000, () => client.received() > 64 * 1024)
    client.socket.destroy()
    await eventually('the upstream response is closed', 3000, () => up.seen.get('/public/endless')!.responseClosed)
    t.notOk(up.seen.get('/public/endless')!.responseFinished)
  })

  t.test('an upstream that dies mid-body closes the client connection: a cut body is never taken for whole', async (t) => {
    up.routes.set('/public/dies', (_req, res) => {
      res.writeHead(200, { 'content-length': '100000' })
      res.write(Buffer.alloc(1000, 'y'))
      setTimeout(() => res.socket?.destroy(), 50)
    })
    const client = await open(gw.port, t)
    // Keep-alive: only the gateway closing the connection tells the client the body is cut.
    client.socket.write('GET /public/dies HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    await eventually('the client connection is closed', 3000, () => client.isClosed())
    t.match(client.text(), /^HTTP\/1\.1 200 /)
    t.match(client.text(), /content-length: 100000/i)
    t.ok(client.received() < 100000, 'the client got less than the announced length')
    const after = await rawGet(gw.port, '/public/after')
    t.equal(after.status, 200, 'the gateway keeps serving')
  })
})

t.test('backpressure: a client that does not read holds the upstream back', async (t) => {
  const up = await scriptedUpstream(t)
  const gw = await gateway(t, yaml(up.url))
  const total = 64 * MiB
  up.routes.set('/public/big', (_req, res, note) => {
    res.writeHead(200, { 'content-length': String(total) })
    const chunk = Buffer.alloc(64 * 1024, 'z')
    // Writes as fast as the gateway takes it, and no faster.
    const pump = () => {
      while (note.bytesPushed < total) {
        note.bytesPushed += chunk.length
        if (!res.write(chunk)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  })
  const client = await open(gw.port, t)
  client.socket.pause()
  client.socket.write('GET /public/big HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  await eventually('the upstream starts', 3000, () => (up.seen.get('/public/big')?.bytesPushed ?? 0) > 0)
  // Let the buffers on the way fill: the client's socket, the gateway's, the upstream's.
  let last = -1
  await eventually('the upstream is held back', 5000, async () => {
    await new Promise((r) => setTimeout(r, 200))
    const now = up.seen.get('/public/big')!.bytesPushed
    const still = now === last
    last = now
    return still
  })
  t.ok(last < 32 * MiB, `the upstream wrote ${Math.round(last / MiB)} MiB of 64 while the client read nothing`)
  client.socket.resume()
  await eventually('the client gets the whole body', 20000, () => client.isClosed())
  t.ok(client.received() > total, 'head and all 64 MiB arrived')
  t.ok(up.seen.get('/public/big')!.responseFinished)
})

t.test("what the upstream's answer may not carry to the client", async (t) => {
  const up = await scriptedUpstream(t)
  const gw = await gateway(t, yaml(up.url))

  t.test('hop-by-hop headers and the ones its Connection nominates are dropped; the rest pass', async (t) => {
    up.routes.set('/public/hop', (_req, res) => {
      res.writeHead(
        200,
        [
          ['Connection', 'x-internal'],
          ['X-Internal', 'secret'],
          ['Keep-Alive', 'timeout=99'],
          ['Proxy-Authenticate', 'Basic'],
          ['Set-Cookie', 'a=1'],
          ['Set-Cookie', 'b=2'],
          ['X-Kept', 'yes'],
        ].flat(),
      )
      res.end('body')
    })
    const res = await rawGet(gw.port, '/public/hop')
    t.equal(res.status, 200)
    t.equal(res.body, 'body')
    t.equal(res.headers['x-internal'], undefined)
    t.equal(res.headers['keep-alive'], undefined)
    t.equal(res.headers['proxy-authenticate'], undefined)
    t.equal(res.headers['x-kept'], 'yes')
    t.equal(res.headers.connection, 'close', "the client's own Connection: close, not the upstream's")
  })

  t.test('both Set-Cookie headers reach the client', async (t) => {
    const res = await fetch(`${gw.url}/public/hop`)
    t.same(res.headers.getSetCookie(), ['a=1', 'b=2'])
    await res.arrayBuffer()
  })

  t.test('an answer before the whole request body was read closes the connection after it', async (t) => {
    up.routes.set('/public/early', (_req, res) => {
      res.writeHead(413, { 'content-type': 'text/plain' }).end('too big for me')
    })
    const client = await open(gw.port, t)
    client.socket.write('POST /public/early HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n')
    client.socket.write(Buffer.alloc(64 * 1024, 'a'))
    await eventually('the answer arrives', 3000, () => /too big for me/.test(client.text()))
    t.match(client.text(), /^HTTP\/1\.1 413 /)
    t.match(client.text(), /\r\nconnection: close\r\n/i)
  })

  t.test('a 204 carries no Content-Length or Content-Type', async (t) => {
    up.routes.set('/public/empty', (_req, res) => {
      res.writeHead(204, { 'content-type': 'text/plain', 'x-kept': 'yes' }).end()
    })
    const res = await rawGet(gw.port, '/public/empty')
    t.equal(res.status, 204)
    t.equal(res.headers['content-type'], undefined)
    t.equal(res.headers['content-length'], undefined)
    t.equal(res.headers['x-kept'], 'yes')
  })

  t.test('a status outside 100-599 is a 502, not passed on', async (t) => {
    up.routes.set('/public/odd', (_req, res) => {
      res.writeHead(600).end('odd')
    })
    const res = await rawGet(gw.port, '/public/odd')
    t.equal(res.status, 502)
    t.equal(JSON.parse(res.body).error, 'upstream_unreachable')
  })

  t.test('an interim 1xx answer is not passed on; the final one is', async (t) => {
    up.routes.set('/public/hints', (_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload' })
      res.end('final')
    })
    const res = await rawRequest(gw.port, 'GET /public/hints HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    t.equal(res.status, 200)
    t.equal(res.body, 'final')
  })
})
