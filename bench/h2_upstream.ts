// The HTTP/2 rows' upstream: an h2c server answering every call as a unary gRPC method does, one
// small message and grpc-status 0 in trailers. Prints {"url": ...} once listening; exits when its
// stdin closes (the benchmark is gone).
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'

// A gRPC message: no compression, length 7, a protobuf string field "hello".
const MESSAGE = Buffer.from([0, 0, 0, 0, 7, 0x0a, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f])

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
process.stdin.on('close', () => process.exit(0)).resume()
process.on('SIGTERM', () => process.exit(0))
