// gRPC for the tests, with @grpc/grpc-js (a gRPC implementation nobody here wrote) on both sides:
// the upstream server of test/fixtures/echo.proto, and clients that call it through the gateway.
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { fileURLToPath } from 'node:url'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Message {
  text: string
  data?: Buffer
  metadata?: Record<string, string>
}

const definition = protoLoader.loadSync(fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url)), { keepCase: true, defaults: true })
const demo = grpc.loadPackageDefinition(definition).demo as unknown as { Echo: grpc.ServiceClientConstructor }

/** What the upstream saw of each call: method, metadata, and how it ended. */
export interface SeenCall {
  method: string
  metadata: Record<string, string>
  cancelled: boolean
  /** The call's deadline as the server read it (its grpc-timeout), in ms from its arrival; Infinity for none. */
  deadlineMs: number
}

export interface GrpcUpstream {
  port: number
  url: string
  calls: SeenCall[]
}

function metadataOf(metadata: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, values] of Object.entries(metadata.getMap())) out[name] = Buffer.isBuffer(values) ? `<binary ${values.length}>` : String(values)
  return out
}

/**
 * The upstream, on h2c (insecure credentials). Say's text steers it: `sleep:<ms>` answers after
 * that long, `fail` ends with a status of its own and a custom trailer, `big:<n>` sends n bytes.
 */
export async function startGrpcUpstream(t: Teardown): Promise<GrpcUpstream> {
  const server = new grpc.Server()
  const calls: SeenCall[] = []
  const record = (method: string, call: { metadata: grpc.Metadata; getDeadline(): grpc.Deadline; on(event: 'cancelled', fn: () => void): void }) => {
    const deadline = Number(call.getDeadline())
    const seen: SeenCall = { method, metadata: metadataOf(call.metadata), cancelled: false, deadlineMs: deadline - Date.now() }
    calls.push(seen)
    call.on('cancelled', () => {
      seen.cancelled = true
    })
    return seen
  }
  server.addService(demo.Echo.service, {
    Say(call: grpc.ServerUnaryCall<Message, Message>, done: grpc.sendUnaryData<Message>) {
      const seen = record('Say', call)
      const text = call.request.text
      if (text === 'fail') {
        const trailer = new grpc.Metadata()
        trailer.set('x-detail', 'custom trailer')
        done({ code: grpc.status.FAILED_PRECONDITION, details: 'told to fail', metadata: trailer })
        return
      }
      const answer = () => {
        const trailer = new grpc.Metadata()
        trailer.set('x-trailer', 'from the upstream')
        done(null, { text, data: text.startsWith('big:') ? Buffer.alloc(Number(text.slice(4)), 7) : call.request.data, metadata: seen.metadata }, trailer)
      }
      if (text.startsWith('sleep:')) setTimeout(answer, Number(text.slice(6)))
      else answer()
    },
    Count(call: grpc.ServerWritableStream<{ n: number; interval_ms: number }, Message>) {
      record('Count', call)
      let i = 0
      const next = () => {
        if (call.cancelled) return
        if (i === call.request.n) return call.end()
        call.write({ text: String(i++) })
        setTimeout(next, call.request.interval_ms)
      }
      next()
    },
    Collect(call: grpc.ServerReadableStream<Message, Message>, done: grpc.sendUnaryData<Message>) {
      record('Collect', call)
      const texts: string[] = []
      call.on('data', (m: Message) => texts.push(m.text))
      call.on('end', () => done(null, { text: texts.join(',') }))
    },
    Chat(call: grpc.ServerDuplexStream<Message, Message>) {
      record('Chat', call)
      call.on('data', (m: Message) => {
        if (m.text === 'hang up') {
          // The server cancels: its stream is reset (RST_STREAM CANCEL).
          ;(call as unknown as { call: { sendStatus?: unknown }; cancelled: boolean }).cancelled = true
          call.destroy(new Error('hang up'))
          return
        }
        call.write({ text: `echo:${m.text}` })
      })
      call.on('end', () => call.end())
    },
  })
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  )
  t.teardown(() => server.forceShutdown())
  return { port, url: `http://127.0.0.1:${port}`, calls }
}

export type EchoClient = grpc.Client & {
  Say(
    request: Message,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, res: Message) => void,
  ): grpc.ClientUnaryCall
  Count(request: { n: number; interval_ms: number }, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<Message>
  Collect(
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, res: Message) => void,
  ): grpc.ClientWritableStream<Message>
  Chat(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<Message, Message>
}

/** A client of the gateway at host:port (a plain-text channel, h2c, unless given TLS credentials), with channel options (grpc.default_authority, …). */
export function echoClient(
  t: Teardown,
  address: string,
  options: grpc.ChannelOptions = {},
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): EchoClient {
  const client = new demo.Echo(address, credentials, options) as unknown as EchoClient
  t.teardown(() => client.close())
  return client
}

/** Call metadata with a bearer token, and any other entries. */
export function withToken(token: string | undefined, extra: Record<string, string> = {}): grpc.Metadata {
  const m = new grpc.Metadata()
  if (token) m.set('authorization', `Bearer ${token}`)
  for (const [k, v] of Object.entries(extra)) m.set(k, v)
  return m
}

/** A unary Say, as a promise of its answer or its error, with the call's initial and trailing metadata. */
export function say(
  client: EchoClient,
  request: Message,
  metadata: grpc.Metadata,
  options: grpc.CallOptions = {},
): Promise<{ err: grpc.ServiceError | null; res?: Message; headers?: grpc.Metadata; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined
    let trailers: grpc.Metadata | undefined
    let result: { err: grpc.ServiceError | null; res?: Message } | undefined
    const finish = () => {
      if (result && trailers) resolve({ ...result, headers, trailers })
    }
    const call = client.Say(request, metadata, options, (err, res) => {
      result = { err, res }
      if (err) trailers ??= err.metadata
      finish()
    })
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m
    })
    call.on('status', (s: grpc.StatusObject) => {
      trailers = s.metadata
      finish()
    })
  })
}

export { grpc }
