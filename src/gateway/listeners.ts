// The proxy listener for what `listen.protocols` names, handed to fastify as its one server
// (fastify's serverFactory), so HTTP/1.1 and HTTP/2 requests reach the same handler and the one
// request path in src/gateway/app.ts:
// - http1 alone: Node's http or https server, as fastify builds it (no factory);
// - h2 (listen.tls): node:http2's secure server, HTTP/2 chosen by ALPN, with HTTP/1.1 beside it
//   on the same port when http1 is listed too (allowHTTP1);
// - h2c: node:http2's server in clear, with prior knowledge (RFC 9113 §3.3); with http1 too, an
//   HTTP/1.1 server whose connections are looked at first: one that opens with the HTTP/2
//   connection preface (RFC 9113 §3.4) is handed to the HTTP/2 server, any other stays HTTP/1.1.
//   An HTTP/1.1 `Upgrade: h2c` is never honoured (RFC 9113 §3.1 removed it): prior knowledge only.
// The HTTP/2 limits are chosen here and recorded in docs/security.md ("HTTP/2").
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import http2, { type Http2ServerRequest, type Http2Session, type SecureServerOptions, type ServerOptions } from 'node:http2'
import type { Server } from 'node:net'
import type { Socket } from 'node:net'
import type { CompiledPolicy } from '../policy/compile.js'
import { clientCertificateOptions } from '../policy/tls_files.js'
import { GatewayH2Response } from '../http/h2_response.js'
import { serverOptions } from './client_limits.js'

type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | GatewayH2Response) => void

/**
 * The HTTP/2 session settings and limits (docs/security.md, "HTTP/2"). Each bounds what one
 * client connection can make the gateway hold or do:
 * - 100 concurrent streams (RFC 9113 §6.5.2 asks for no fewer than 100; Node's default is 2³²−1):
 *   a client that opens more once it has acknowledged the setting gets GOAWAY(PROTOCOL_ERROR);
 * - the header list (decoded, so an HPACK bomb counts at its full size) at limits.max_header_bytes,
 *   as for HTTP/1.1, and at most 128 fields;
 * - rapid reset (CVE-2023-44487): at most 200 streams reset by the client in a burst, then 33 a
 *   second, else GOAWAY (nghttp2's rate limit, which says INTERNAL_ERROR) and the connection closes;
 * - CONTINUATION floods (CVE-2024-27316 and kin): nghttp2 1.61+ caps the frames of one header
 *   block, and the decoded size is bounded above; 100 invalid frames or 100 refused streams end
 *   the session (Node: 1,000 and 100);
 * - at most 10 unanswered PINGs and 32 settings per SETTINGS frame (Node's defaults), and 10 MB of
 *   session memory (nghttp2's buffers), beyond which new streams are refused.
 * Server push is off: the gateway never pushes, and a client may not ask for it.
 */
export const H2_MAX_CONCURRENT_STREAMS = 100
export const H2_STREAM_RESET_BURST = 200
export const H2_STREAM_RESET_RATE = 33

function h2Options(policy: CompiledPolicy): ServerOptions {
  return {
    settings: {
      maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
      maxHeaderListSize: policy.maxHeaderBytes,
      enablePush: false,
    },
    maxHeaderListPairs: 128,
    streamResetBurst: H2_STREAM_RESET_BURST,
    streamResetRate: H2_STREAM_RESET_RATE,
    maxSessionInvalidFrames: 100,
    maxSessionRejectedStreams: 100,
    maxOutstandingPings: 10,
    maxSettings: 32,
    maxSessionMemory: 10,
    // A client that never speaks after connecting is closed at the header time limit, as HTTP/1.1's.
    unknownProtocolTimeout: policy.clientLimits.headersTimeoutMs || 10_000,
    Http2ServerResponse: GatewayH2Response,
  } as ServerOptions
}

/** fastify's serverFactory for the policy's protocols; undefined for HTTP/1.1 alone (fastify builds that server itself). */
export function serverFactory(policy: CompiledPolicy): ((handler: Handler) => Server) | undefined {
  const { http1, http2: h2 } = policy.listen.protocols
  if (!h2) return undefined
  const tls = policy.listen.tls
  return (handler) => {
    let server: Server
    if (tls) {
      const options: SecureServerOptions = {
        ...h2Options(policy),
        cert: tls.cert,
        key: tls.key,
        // Certificate-bound tokens (RFC 8705) over HTTP/2 as over HTTP/1.1.
        ...clientCertificateOptions(tls),
        allowHTTP1: http1,
        // HTTP/1.1 beside it keeps its limits (src/gateway/client_limits.ts).
        ...(http1 ? { maxHeaderSize: policy.maxHeaderBytes, ...serverOptions(policy.clientLimits) } : {}),
        handshakeTimeout: policy.clientLimits.headersTimeoutMs || 120_000,
      } as SecureServerOptions
      server = http2.createSecureServer(options, handler as never)
    } else if (http1) {
      server = withPrefaceSniffing(
        http.createServer({ maxHeaderSize: policy.maxHeaderBytes, ...serverOptions(policy.clientLimits) }, handler as never),
        http2.createServer(h2Options(policy), handler as never),
        policy.clientLimits.headersTimeoutMs || 10_000,
      )
    } else {
      server = http2.createServer(h2Options(policy), handler as never)
    }
    trackSessions(server)
    return server
  }
}

// RFC 9113 §3.4: what an HTTP/2 client with prior knowledge sends first.
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

/**
 * HTTP/1.1 and h2c on one port: each new connection is read until its first bytes show which it
 * is (an HTTP/1.1 request line can never start with the preface: RFC 9113 §3.4 reserves PRI),
 * then handed, with those bytes put back, to the HTTP/1.1 server's own connection handling or
 * to the HTTP/2 server. A connection that sends nothing within `waitMs` is closed.
 */
function withPrefaceSniffing(h1: http.Server, h2: http2.Http2Server, waitMs: number): http.Server {
  const h1Listeners = h1.listeners('connection') as Array<(socket: Socket) => void>
  h1.removeAllListeners('connection')
  h1.on('connection', (socket: Socket) => {
    let seen: Buffer | undefined
    const timer = setTimeout(() => socket.destroy(), waitMs)
    const onData = (chunk: Buffer) => {
      seen = seen ? Buffer.concat([seen, chunk]) : chunk
      const n = Math.min(seen.length, PREFACE.length)
      const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n))
      // Not decided until the whole preface is there (or a byte differs).
      if (isH2 && seen.length < PREFACE.length) return
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.pause()
      socket.unshift(seen)
      // The HTTP/2 session reads the bytes put back itself (on the next tick); HTTP/1.1's parser
      // gets them as 'data' once the socket flows again.
      if (isH2) h2.emit('connection', socket)
      else {
        for (const listener of h1Listeners) listener.call(h1, socket)
        socket.resume()
      }
    }
    const onClose = () => clearTimeout(timer)
    socket.on('data', onData)
    socket.once('close', onClose)
    // A reset before the first bytes: nothing to hand over.
    socket.on('error', () => socket.destroy())
  })
  ;(h1 as unknown as { [H2_PART]: http2.Http2Server })[H2_PART] = h2
  // The HTTP/2 part is not listening: its sessions (connections the HTTP/1.1 server accepted)
  // get their GOAWAY when the listener closes, as Node's own HTTP/2 server gives them.
  const close = h1.close.bind(h1)
  h1.close = ((callback?: (err?: Error) => void) => {
    close(callback)
    for (const session of openSessions(h1)) if (!session.closed) session.close()
    return h1
  }) as typeof h1.close
  return h1
}

const H2_PART = Symbol('jwtgate.h2Server')
const SESSIONS = Symbol('jwtgate.h2Sessions')

/**
 * The shutdown (src/server.ts) closes idle connections and, at its deadline, all of them, with
 * the methods Node's HTTP/1.1 server has; an HTTP/2 session is one connection: idle when it has
 * no open stream. close() sends GOAWAY, so the client opens no new stream and those in flight
 * finish; the deadline destroys what is left.
 */
function trackSessions(server: Server): void {
  const sessions = new Set<Http2Session>()
  const h2 = ((server as unknown as { [H2_PART]?: Server })[H2_PART] ?? server) as http2.Http2Server
  h2.on('session', (session: Http2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
  })
  const target = server as Server & { closeIdleConnections?: () => void; closeAllConnections?: () => void; [SESSIONS]?: Set<Http2Session> }
  target[SESSIONS] = sessions
  const closeIdle = target.closeIdleConnections?.bind(server)
  const closeAll = target.closeAllConnections?.bind(server)
  target.closeIdleConnections = () => {
    closeIdle?.()
    for (const session of sessions) {
      if (!session.closed) session.close()
    }
  }
  target.closeAllConnections = () => {
    closeAll?.()
    for (const session of sessions) session.destroy()
  }
}

/** The HTTP/2 sessions a listener built here has open (tests, the shutdown). */
export function openSessions(server: Server): ReadonlySet<Http2Session> {
  return (server as unknown as { [SESSIONS]?: Set<Http2Session> })[SESSIONS] ?? new Set()
}
