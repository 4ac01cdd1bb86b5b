// The demo's gRPC service, on h2c: every call (any /package.Service/Method, with
// content-type application/grpc) gets its own request messages back as they were sent, then
// grpc-status 0, and the identity the gateway sent (x-user-id, x-user-roles) as response metadata.
// It needs no .proto: an echo returns the request's bytes as the response message, which is any
// method whose request and response types are the same. Never for production.
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'

export interface GrpcEcho {
  url: string
  close(): Promise<void>
}

export async function startGrpcEcho(): Promise<GrpcEcho> {
  const server = http2.createServer()
  server.on('stream', (stream, headers) => {
    if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true })
      return
    }
    const identity: http2.OutgoingHttpHeaders = {}
    for (const name of ['x-user-id', 'x-user-roles']) if (headers[name] !== undefined) identity[name] = headers[name]
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...identity }, { waitForTrailers: true })
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
    // The length-prefixed messages (gRPC over HTTP/2) go back byte for byte.
    stream.pipe(stream)
  })
  server.on('sessionError', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
