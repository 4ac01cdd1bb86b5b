// The HTTP/2 benchmark's own servers (bench/h2.ts). Usage: h2_servers.ts upstream | floor <upstream-url>.
// - upstream: an h2c gRPC-shaped server: every call gets one small message and grpc-status 0 in
//   trailers, as a unary gRPC method answers.
// - floor: the bare Node HTTP/2 forwarder jwtgate is measured against: fastify with http2 in
//   clear, forwarding each request on one node:http2 client session to the upstream (headers,
//   body, trailers), no auth, no log.
// Prints {"url": ...} once listening; exits when its stdin closes.
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'

const role = process.argv[2]
const MESSAGE = Buffer.from([0, 0, 0, 0, 7, 0x0a, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f])

if (role === 'upstream') {
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } })
  server.on('stream', (stream) => {
    stream.resume()
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
      stream.end(MESSAGE)
    })
  })
  server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })))
} else if (role === 'floor') {
  const target = process.argv[3]!
  const session = http2.connect(target)
  const app = Fastify({ logger: false, http2: true })
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
  app.all('*', (request, reply) => {
    const headers: http2.OutgoingHttpHeaders = {}
    for (const [name, value] of Object.entries(request.headers)) if (name[0] !== ':') headers[name] = value
    const upstream = session.request({ ...headers, ':method': request.method, ':path': request.url })
    ;(request.raw as unknown as NodeJS.ReadableStream).pipe(upstream)
    const res = reply.raw as unknown as http2.Http2ServerResponse
    upstream.on('response', (h) => {
      const out: http2.OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(h)) if (name[0] !== ':') out[name] = value
      res.writeHead(Number(h[':status']), out)
    })
    upstream.on('trailers', (t) => res.addTrailers(t))
    upstream.on('data', (chunk: Buffer) => res.write(chunk))
    upstream.on('end', () => res.end())
    reply.hijack()
  })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  console.log(JSON.stringify({ url: address }))
} else {
  throw new Error('usage: h2_servers.ts upstream | floor <upstream-url>')
}
process.stdin.on('close', () => process.exit(0)).resume()
process.on('SIGTERM', () => process.exit(0))
