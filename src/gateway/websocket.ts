// WebSockets: on a route with `websocket: true`, an upgrade request is checked like any request
// (the same decide(): path, route, token, claims), its headers are rewritten like a forwarded
// request's (the same headersForUpstream: the client's identity headers stripped, the ones
// decide() computed into state.identityHeaders set, hop-by-hop removed, X-Forwarded-*), and only
// then is a connection opened to the upstream. When the upstream answers 101, the two sockets
// are piped together, byte for byte.
//
// Node hands every request with an Upgrade header to the server's `upgrade` listener, detached
// from the HTTP parser. Whatever is not tunnelled (a denial, a route without `websocket`, an
// `Upgrade: h2c`, which RFC 9110 §7.8 lets a server ignore) is given back to fastify as one
// plain HTTP request on that connection, which is then closed; the decision already made
// travels with it, so the token is not checked (or a one-time token used) twice.
import { request as httpRequest, ServerResponse, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { fail } from '../http/denial.js'
import { REQUEST_ID_HEADER, writeError } from '../http/respond.js'
import type { CompiledPolicy, Route } from '../policy/compile.js'
import { responseHeaders, withoutNominated } from '../proxy/forward.js'
import { forwardedQuery } from '../proxy/token_removal.js'
import { CONNECT_TIMEOUT_MS, upstreamTlsOptions } from '../proxy/upstream_pools.js'
import type { Tracing } from '../tracing/tracing.js'
import { admit } from './admit.js'
import { headersForUpstream, type RouteForwarding } from './forward.js'
import { newState, traceRequest, type RecordRequest, type RequestState } from './request_state.js'
import { watchToken, type TokenStopReason } from './token_watch.js'

const DECIDED = Symbol('jwtgate.decidedAtUpgrade')

/** What the tunnel needs of the gateway (src/gateway/app.ts's GatewayApp is one). */
export interface Tunnels {
  /** The policy new requests use. */
  readonly policy: CompiledPolicy
  readonly closing: boolean
  /** Client sockets of open tunnels, which the HTTP server no longer tracks. */
  readonly upgraded: Set<Socket>
  record: RecordRequest
  /** The route's forwarding, built when its policy was taken. */
  forwarding(route: Route): RouteForwarding
  /** Counts a tunnel the gateway closed because its token stopped being accepted. */
  tunnelClosed?(reason: TunnelCloseReason, route: string): void
}

export type TunnelCloseReason = TokenStopReason

export interface UpgradeContext {
  server: Server
  gateway: Tunnels
  logger: Logger
  /** The gateway's request id for a raw request (fastify's genReqId). */
  requestId(req: IncomingMessage): string
  /** Spans, when tracing is on: the upgrade is a request like any other, with its own SERVER span. */
  tracing?: Tracing
}

/** The decision made for an upgrade request that is then served as plain HTTP, if any. */
export function decidedAtUpgrade(raw: IncomingMessage): RequestState | undefined {
  return (raw as IncomingMessage & { [DECIDED]?: RequestState })[DECIDED]
}

/** The server's `upgrade` listener. */
export function handleUpgrade(ctx: UpgradeContext, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  // Detached from the HTTP server, the socket has no error listener left: without this one, a
  // client resetting the connection would crash the process.
  socket.on('error', () => socket.destroy())
  if (ctx.gateway.closing || !isWebSocketUpgrade(req)) {
    serveAsHttp(ctx, req, socket)
    return
  }
  const state = newState(ctx.gateway.policy)
  traceRequest(state, req, ctx.tracing)
  const admitted = () => {
    if (state.denial || !state.route?.websocket) {
      ;(req as IncomingMessage & { [DECIDED]?: RequestState })[DECIDED] = state
      serveAsHttp(ctx, req, socket)
    } else {
      tunnel(ctx, req, socket, head, state)
    }
  }
  const pending = admit(req, state, true)
  if (!pending) {
    admitted()
    return
  }
  pending.then(admitted, (err: Error) => {
    ctx.logger.error({ err: { message: err.message } }, 'upgrade request failed')
    socket.destroy()
  })
}

function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade
  return req.method === 'GET' && typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket'
}

/**
 * Answers the request through the normal HTTP path (fastify, the `request` event), then closes
 * the connection: the parser has let go of it, so it cannot carry a second request.
 */
function serveAsHttp(ctx: UpgradeContext, req: IncomingMessage, socket: Duplex): void {
  const res = new ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket as Socket)
  res.on('finish', () => {
    res.detachSocket(socket as Socket)
    ;(socket as Socket).destroySoon()
  })
  // The body of an upgrade request is not parsed (the parser stopped after the headers), so one
  // with a body cannot be served; a WebSocket handshake never has one.
  if (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0) {
    writeError(res, fail('bad_request', 'an upgrade request with a body is not supported'), ctx.requestId(req))
    return
  }
  ctx.server.emit('request', req, res)
}

function tunnel(ctx: UpgradeContext, req: IncomingMessage, socket: Duplex, head: Buffer, state: RequestState): void {
  const started = performance.now()
  const route = state.route!
  const upstream = route.upstream
  const id = ctx.requestId(req)
  const path = upstream.basePath + state.path!
  // The upgrade request to the upstream is the CLIENT span, when tracing is on.
  const client = state.span?.startClient({ method: 'GET', upstream: upstream.name, origin: upstream.origin, path })
  const headers = headersForUpstream(withoutNominated(req.headers), state, req, id, client ?? state.trace)
  const url = new URL(upstream.origin)
  headers.host = url.host
  headers.connection = 'Upgrade'
  headers.upgrade = 'websocket'
  const https = url.protocol === 'https:'
  const options = {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port || (https ? 443 : 80),
    path: path + forwardedQuery(req.url ?? '', route.auth?.sources.queryNames ?? []),
    method: 'GET',
    headers,
    agent: false,
    ...(https ? upstreamTlsOptions(upstream) : {}),
  }
  const log = (status: number) => ctx.gateway.record(state, req, id, status, performance.now() - started, undefined, true)

  let settled = false
  const upstreamRequest: ClientRequest = (https ? httpsRequest : httpRequest)(options)
  const failed = (timedOut: boolean) => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    upstreamRequest.destroy()
    const failure = fail(timedOut ? 'upstream_timeout' : 'upstream_unreachable')
    state.upstreamError = failure.reason
    client?.end(failure.reason)
    log(failure.status)
    writeError(detachedResponse(req, socket), failure, id)
  }
  // Connecting has its fixed limit; then the upstream's timeout applies to its answer.
  let timer = setTimeout(() => failed(true), CONNECT_TIMEOUT_MS)
  upstreamRequest.on('socket', (s: Socket) =>
    s.once('connect', () => {
      clearTimeout(timer)
      if (upstream.timeoutMs > 0) timer = setTimeout(() => failed(true), upstream.timeoutMs)
    }),
  )
  upstreamRequest.on('error', () => failed(false))
  socket.on('close', () => {
    if (!settled) {
      settled = true
      clearTimeout(timer)
      upstreamRequest.destroy()
      client?.end('client_closed')
    }
  })

  upstreamRequest.on('upgrade', (response: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer) => {
    if (settled) return upstreamSocket.destroy()
    upstreamSocket.on('error', () => upstreamSocket.destroy())
    // It must switch to what the client asked for; anything else would be a protocol confusion.
    if (String(response.headers.upgrade).toLowerCase() !== 'websocket') {
      upstreamSocket.destroy()
      return failed(false)
    }
    settled = true
    clearTimeout(timer)
    state.upstreamStatus = 101
    client?.answered(101)
    client?.end()
    // latin1, as Node read them: header bytes 0x80-0xFF go back as they came, not re-encoded as UTF-8.
    socket.write(switchingProtocols(response.headers, id), 'latin1')
    if (upstreamHead.length) socket.write(upstreamHead)
    if (head.length) upstreamSocket.write(head)
    log(101)
    const tunnel = pipeTogether(ctx, socket as Socket, upstreamSocket, state, id)
    tunnel.client.feed(head)
    tunnel.upstream.feed(upstreamHead)
  })
  // Anything but 101: the upstream refused the upgrade; its answer goes back as it is.
  upstreamRequest.on('response', (response: IncomingMessage) => {
    if (settled) return response.destroy()
    settled = true
    clearTimeout(timer)
    state.upstreamStatus = response.statusCode
    client?.answered(response.statusCode ?? 502)
    client?.end()
    log(response.statusCode ?? 502)
    const res = detachedResponse(req, socket)
    res.writeHead(response.statusCode ?? 502, { ...responseHeaders(response.headers), [REQUEST_ID_HEADER]: id } as Record<string, string | string[]>)
    response.pipe(res)
  })
  upstreamRequest.end()
}

function switchingProtocols(headers: IncomingHttpHeaders, id: string): string {
  let text = 'HTTP/1.1 101 Switching Protocols\r\n'
  for (const [name, value] of Object.entries({ ...responseHeaders(headers), [REQUEST_ID_HEADER]: id })) {
    for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${v}\r\n`
  }
  return `${text}connection: Upgrade\r\nupgrade: websocket\r\n\r\n`
}

/** A response on a socket that left the HTTP server, which closes it once written. */
function detachedResponse(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket as Socket)
  res.on('finish', () => (socket as Socket).destroySoon())
  return res
}

// How long the two ends get to answer the close frame before their connections are destroyed.
const CLOSE_GRACE_MS = 1000
/** RFC 6455 §7.4.1: 1008, policy violation. */
const POLICY_VIOLATION = 1008

/**
 * Where one direction of a tunnel is in its stream of WebSocket frames (RFC 6455 §5.2): the
 * gateway passes the bytes on untouched, and follows frame boundaries only so that a close frame
 * of its own is written between two frames, never inside one.
 */
export class FrameCursor {
  /** The start of a header split across chunks (at most 13 bytes); empty otherwise. */
  private partial: Buffer = EMPTY
  /** Payload bytes of the current frame still to come. */
  private left = 0

  /** No frame is partly passed on. */
  get atBoundary(): boolean {
    return this.left === 0 && this.partial.length === 0
  }

  /** Follows one chunk; allocates nothing unless a header is split across chunks. */
  feed(chunk: Buffer): void {
    let i = 0
    while (i < chunk.length) {
      if (this.left > 0) {
        const n = Math.min(this.left, chunk.length - i)
        this.left -= n
        i += n
      } else if (this.partial.length === 0 && chunk.length - i >= headerLength(chunk, i)) {
        this.left = payloadLength(chunk, i)
        i += headerLength(chunk, i)
      } else {
        // A header (2 to 14 bytes) split across chunks: gather just its bytes, the first two
        // (which give its length), then the rest.
        const need = this.partial.length < 2 ? 2 : headerLength(this.partial, 0)
        const take = Math.min(need - this.partial.length, chunk.length - i)
        this.partial = Buffer.concat([this.partial, chunk.subarray(i, i + take)])
        i += take
        if (this.partial.length >= 2 && this.partial.length === headerLength(this.partial, 0)) {
          this.left = payloadLength(this.partial, 0)
          this.partial = EMPTY
        }
      }
    }
  }
}

const EMPTY = Buffer.alloc(0)

/** The length of the header at `at`, as far as its first two bytes tell (2 while fewer are there). */
function headerLength(bytes: Buffer, at: number): number {
  if (bytes.length - at < 2) return 2
  const second = bytes[at + 1]!
  const len7 = second & 0x7f
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (second & 0x80 ? 4 : 0)
}

/** The payload length of the whole header at `at`. */
function payloadLength(bytes: Buffer, at: number): number {
  const len7 = bytes[at + 1]! & 0x7f
  if (len7 === 126) return bytes.readUInt16BE(at + 2)
  if (len7 === 127) return Number(bytes.readBigUInt64BE(at + 2))
  return len7
}

/** A close frame: code and reason; masked when sent to the upstream (client to server, §5.3). */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  const payload = Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason, 'utf8').subarray(0, 123)])
  const header = Buffer.from([0x88, (masked ? 0x80 : 0) | payload.length])
  if (!masked) return Buffer.concat([header, payload])
  const mask = randomBytes(4)
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))
  return Buffer.concat([header, mask, body])
}

interface OpenTunnel {
  /** Frames the client sends (masked), and those the upstream sends. */
  client: FrameCursor
  upstream: FrameCursor
}

function pipeTogether(ctx: UpgradeContext, client: Socket, upstream: Socket, state: RequestState, id: string): OpenTunnel {
  const gateway = ctx.gateway
  const cursors: OpenTunnel = { client: new FrameCursor(), upstream: new FrameCursor() }
  client.setTimeout(0)
  client.setNoDelay(true)
  upstream.setNoDelay(true)
  gateway.upgraded.add(client)
  let closing = false
  const end = () => {
    unsubscribe()
    gateway.upgraded.delete(client)
    client.destroy()
    upstream.destroy()
  }
  // The token was checked once, at the upgrade; the tunnel must not outlive it. Both ends get a
  // close frame (1008, policy violation), written between two frames, then a moment to answer.
  const closeForPolicy = (reason: TunnelCloseReason) => {
    if (closing) return
    closing = true
    unsubscribe()
    client.unpipe(upstream)
    upstream.unpipe(client)
    const text = reason === 'expired' ? 'token expired' : 'token revoked'
    const framed = { client: cursors.upstream.atBoundary, upstream: cursors.client.atBoundary }
    if (framed.client) client.write(closeFrame(POLICY_VIOLATION, text, false))
    if (framed.upstream) upstream.write(closeFrame(POLICY_VIOLATION, text, true))
    client.end()
    upstream.end()
    setTimeout(end, CLOSE_GRACE_MS).unref()
    const route = state.route!.name
    gateway.tunnelClosed?.(reason, route)
    ctx.logger.info(
      { request_id: id, route, reason, close_code: POLICY_VIOLATION, close_frame_to_client: framed.client, close_frame_to_upstream: framed.upstream },
      `websocket closed: ${text}`,
    )
  }
  // The token was checked once, at the upgrade: the tunnel closes at its end or revocation.
  const unsubscribe = watchToken(state, () => gateway.policy, closeForPolicy)
  client.on('close', end)
  upstream.on('close', end)
  client.on('data', (chunk: Buffer) => cursors.client.feed(chunk))
  upstream.on('data', (chunk: Buffer) => cursors.upstream.feed(chunk))
  client.pipe(upstream)
  upstream.pipe(client)
  return cursors
}
