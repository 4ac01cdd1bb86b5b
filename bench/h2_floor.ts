// The HTTP/2 rows' Node floor: the obvious hand-written HTTP/2 forwarder, fastify with http2 in
// clear, forwarding each request on one node:http2 client session to the upstream (headers, body,
// trailers), no auth, no log. Usage: h2_floor.ts <upstream-url>.
// Prints {"url": ...} once listening; exits when its stdin closes.
import http2 from 'node:http2'
import Fastify from 'fastify'

const target = process.argv[2]
if (!target) throw new Error('usage: h2_floor.ts <upstream-url>')
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
process.stdin.on('close', () => process.exit(0)).resume()
// An exit rather than death by signal, so `--cpu-prof` (BENCH_PROFILE) writes its profile.
process.on('SIGTERM', () => process.exit(0))
