// An upstream that answers every request with what it received, and keeps a record of it:
// the demo's back end, and the tests' witness of what reached the upstream.
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Received {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: string
}

export interface EchoUpstream {
  url: string
  port: number
  received: Received[]
  /** Delay before answering, for timeout tests. */
  delayMs: number
  close(): Promise<void>
}

export async function startEchoUpstream(options: { port?: number } = {}): Promise<EchoUpstream> {
  const upstream: EchoUpstream = {
    url: '',
    port: 0,
    received: [],
    delayMs: 0,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const record: Received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString('utf8') }
      upstream.received.push(record)
      setTimeout(() => {
        if (res.destroyed) return
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'echo' })
          .end(JSON.stringify({ method: record.method, url: record.url, headers: record.headers, body: record.body }))
      }, upstream.delayMs).unref()
    })
  })
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve))
  upstream.port = (server.address() as AddressInfo).port
  upstream.url = `http://127.0.0.1:${upstream.port}`
  return upstream
}
