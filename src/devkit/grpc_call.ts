// One unary gRPC call made by hand over h2c, for the demo's --check: no .proto and no gRPC
// library, only the wire format (a 5-byte prefix and the message's bytes) and the trailers.
import http2 from 'node:http2'

/** A small protobuf message: field 1, a 5-byte string "hello". */
export const GRPC_HELLO = Buffer.from([0, 0, 0, 0, 7, 0x0a, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f])

/** grpc-status of the call (from the trailers, or the only header block), and whether the message came back as sent. */
export function grpcCall(url: string, method: string, token: string | undefined): Promise<{ status: string | undefined; echoed: boolean }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url)
    session.on('error', reject)
    const stream = session.request({
      ':method': 'POST',
      ':path': method,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    })
    let status: string | undefined
    const chunks: Buffer[] = []
    stream.on('response', (headers) => {
      status = headers['grpc-status'] as string | undefined
    })
    stream.on('trailers', (trailers) => {
      status = trailers['grpc-status'] as string | undefined
    })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('close', () => {
      session.close()
      resolve({ status, echoed: Buffer.concat(chunks).equals(GRPC_HELLO) })
    })
    stream.end(GRPC_HELLO)
  })
}
