// An upstream that answers every request with what it received, and keeps a record of it:
// the demo's back end, and the tests' witness of what reached the upstream.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type ServerOptions } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'

export interface Received {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: string
  /** Over https with client certificates requested: the subject CN of the one presented. */
  clientCertificate?: string
}

export interface EchoUpstream {
  url: string
  port: number
  received: Received[]
  /** Delay before answering, for timeout tests. */
  delayMs: number
  close(): Promise<void>
}

/**
 * `tls`: serve https with these options (a certificate; `requestCert` to ask for a client's);
 * `maxHeaderSize`: Node's limit on a request's header section (16 KiB by default).
 */
export async function startEchoUpstream(options: { port?: number; tls?: ServerOptions; maxHeaderSize?: number } = {}): Promise<EchoUpstream> {
  const upstream: EchoUpstream = {
    url: '',
    port: 0,
    received: [],
    delayMs: 0,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  const echo = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const record: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
      }
      const peer = options.tls?.requestCert ? (req.socket as TLSSocket).getPeerCertificate() : undefined
      if (peer?.subject) record.clientCertificate = String(peer.subject.CN)
      upstream.received.push(record)
      setTimeout(() => {
        if (res.destroyed) return
        res
          .writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'echo' })
          .end(JSON.stringify({ method: record.method, url: record.url, headers: record.headers, body: record.body }))
      }, upstream.delayMs).unref()
    })
  }
  const limits = options.maxHeaderSize ? { maxHeaderSize: options.maxHeaderSize } : {}
  const server = options.tls ? createHttpsServer({ ...options.tls, ...limits }, echo) : createServer(limits, echo)
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve))
  upstream.port = (server.address() as AddressInfo).port
  upstream.url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${upstream.port}`
  return upstream
}
