// gRPC-Web for the tests, with Connect (@connectrpc/connect-node, a gRPC-Web implementation
// nobody here wrote): the upstream server (connectNodeAdapter, speaking gRPC-Web only) over
// HTTP/1.1 or h2c, and a client (createGrpcWebTransport) over HTTP/1.1, as a browser's would be.
// The service is test/fixtures/echo.proto's demo.Echo (the one the grpc-js tests use), its
// descriptor written out here for the two methods these tests call, so no code is generated.
import { create, createFileRegistry, type DescService } from '@bufbuild/protobuf'
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt'
import { createClient, type Client } from '@connectrpc/connect'
import { connectNodeAdapter, createGrpcWebTransport } from '@connectrpc/connect-node'
import { createServer } from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'

interface Teardown {
  teardown(fn: () => unknown): void
}

const { STRING, BYTES, INT32 } = FieldDescriptorProto_Type
const { OPTIONAL } = FieldDescriptorProto_Label
const field = (name: string, number: number, type: FieldDescriptorProto_Type) => ({ name, number, type, label: OPTIONAL, jsonName: name })
const echoFile = create(FileDescriptorProtoSchema, {
  name: 'echo.proto',
  package: 'demo',
  syntax: 'proto3',
  messageType: [
    { name: 'Message', field: [field('text', 1, STRING), field('data', 2, BYTES)] },
    { name: 'CountRequest', field: [field('n', 1, INT32), field('interval_ms', 2, INT32)] },
  ],
  service: [
    {
      name: 'Echo',
      method: [
        { name: 'Say', inputType: '.demo.Message', outputType: '.demo.Message' },
        { name: 'Count', inputType: '.demo.CountRequest', outputType: '.demo.Message', serverStreaming: true },
      ],
    },
  ],
})
export const EchoService = createFileRegistry(echoFile, () => undefined).getService('demo.Echo') as DescService

/** What the upstream saw of each call: method and request headers (the call's metadata). */
export interface SeenWebCall {
  method: string
  headers: Record<string, string>
  httpVersion: string
}

/** A gRPC-Web upstream (Connect, gRPC-Web only) over HTTP/1.1 or h2c; Say answers its text, Count streams n messages. */
export async function startGrpcWebUpstream(t: Teardown, over: 'http1' | 'h2c'): Promise<{ url: string; calls: SeenWebCall[] }> {
  const calls: SeenWebCall[] = []
  const record = (method: string, headers: Headers, httpVersion: string) => calls.push({ method, headers: Object.fromEntries(headers), httpVersion })
  let version = ''
  const adapter = connectNodeAdapter({
    grpc: false,
    connect: false,
    grpcWeb: true,
    routes(router) {
      router.service(EchoService, {
        say(req: { text: string }, ctx: { requestHeader: Headers; responseTrailer: Headers }) {
          record('Say', ctx.requestHeader, version)
          ctx.responseTrailer.set('x-trailer', 'from the upstream')
          return { text: req.text }
        },
        async *count(req: { n: number }, ctx: { requestHeader: Headers }) {
          record('Count', ctx.requestHeader, version)
          for (let i = 0; i < req.n; i++) yield { text: String(i) }
        },
      } as never)
    },
  })
  const handler = (req: { httpVersion: string }, res: unknown) => {
    version = req.httpVersion
    ;(adapter as (req: unknown, res: unknown) => void)(req, res)
  }
  const server = over === 'h2c' ? http2.createServer(handler) : createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls }
}

/** A gRPC-Web client of `baseUrl` over HTTP/1.1. */
export function grpcWebClient(baseUrl: string): Client<typeof EchoService> {
  return createClient(EchoService, createGrpcWebTransport({ baseUrl, httpVersion: '1.1' }))
}
