// The proxy listener's bounds on slow clients and on client connections (`limits:` in the
// policy; docs/security.md, "Slow clients"). Each keeps a client that is slow on purpose from
// holding a gateway connection, or through it an upstream connection, for long:
// - the header section (Node's headersTimeout) and the whole request (requestTimeout, which
//   fastify would otherwise set to 0, off): 408 `request_timeout` in our JSON shape;
// - a response the client does not read: the socket's idle timer is `send_timeout`; when it
//   fires while bytes wait to be written to the client, the connection is closed, which ends the
//   upstream request and frees its connection (undici's body timeout does not run while a
//   response is paused by backpressure);
// - client connections: Node's maxConnections for the listener, and our own count per address
//   (addresses in trusted_proxies excepted: a proxy in front carries many clients).
// The upload rate is held in src/proxy/body_limit.ts, the wait for an upstream connection in
// src/proxy/upstream_pools.ts.
import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import type { Http2Session } from 'node:http2'
import { isIP, type Socket } from 'node:net'
import type { Metrics } from '../admin/metrics.js'
import { fail } from '../http/denial.js'
import { rawError } from '../http/respond.js'
import type { ClientLimits, CompiledPolicy } from '../policy/compile.js'

/** The server options Node reads only when the server is created (the rest follow a reload). */
export function serverOptions(limits: ClientLimits): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  const shortest = Math.min(...[limits.headersTimeoutMs, limits.requestTimeoutMs].filter((ms) => ms > 0), 4000)
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // How often Node looks for connections past those two limits: they hold to within this.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(shortest / 4))),
  }
}

/** Puts a policy's limits on the server; for new connections (and the next checks) from now on. */
export function applyClientLimits(server: Server, limits: ClientLimits): void {
  server.headersTimeout = limits.headersTimeoutMs
  server.requestTimeout = limits.requestTimeoutMs
  server.maxConnections = limits.maxConnections > 0 ? limits.maxConnections : Number.POSITIVE_INFINITY
  server.timeout = limits.sendTimeoutMs
}

function isHttp2Session(value: Tracked | Http2Session): value is Http2Session {
  return 'goaway' in value && typeof value.goaway === 'function'
}

/** Set on a socket whose request Node cut for taking too long, for the access line of that request. */
export const TIMED_OUT = Symbol('jwtgate.requestTimedOut')
type Tracked = Socket & { [TIMED_OUT]?: boolean; _httpMessage?: { headersSent: boolean } | null }

/** Installs the listeners; `policy()` is the live policy. */
export function watchClients(server: Server, policy: () => CompiledPolicy, metrics: Metrics): void {
  // fastify's own clientError listener stays for every other client error (400, 431).
  const others = server.listeners('clientError') as Array<(err: Error & { code?: string }, socket: Socket) => void>
  server.removeAllListeners('clientError')
  server.on('clientError', (err: Error & { code?: string }, socket: Tracked) => {
    if (err.code !== 'ERR_HTTP_REQUEST_TIMEOUT') {
      for (const listener of others) listener.call(server, err, socket)
      return
    }
    // Headers done means a response object exists: then it was the body that was late.
    const response = socket._httpMessage
    metrics.clientTimeout(response ? 'request' : 'headers')
    socket[TIMED_OUT] = true
    if (socket.writable && !response?.headersSent) socket.write(rawError(fail('request_timeout'), randomUUID()))
    socket.destroy()
  })

  // The socket's idle timer (server.timeout, send_timeout) fired. With this listener Node no
  // longer destroys the socket itself, so every case is decided here.
  server.on('timeout', (socket: Tracked | Http2Session) => {
    // An HTTP/2 listener says this of a session quiet for send_timeout (node:http2's server
    // timeout). Closing it sends GOAWAY: no new stream on it, while streams in flight (a quiet gRPC
    // stream between its messages) go on; destroying it, Node's default, would cut them.
    if (isHttp2Session(socket)) {
      if (!socket.closed) socket.close()
      return
    }
    if (socket.writableLength > 0) {
      // Bytes wait for a client that does not read them.
      metrics.clientTimeout('send')
      socket.destroy()
    } else if (!socket._httpMessage) {
      // Idle between requests or before the first: what Node would have done.
      socket.destroy()
    }
    // Otherwise a request is in flight and nothing waits to be sent: the upstream is working
    // (bounded by its timeout) or the body is coming (bounded by min_body_rate, request_timeout).
  })

  server.on('drop', () => metrics.connectionRefused('max_connections'))

  const perAddress = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const cap = policy().clientLimits.maxConnectionsPerAddress
    const address = socket.remoteAddress
    if (cap <= 0 || address === undefined) return
    const trusted = policy().https.trustedProxies
    if (trusted?.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')) return
    const open = perAddress.get(address) ?? 0
    if (open >= cap) {
      metrics.connectionRefused('per_address')
      socket.destroy()
      return
    }
    perAddress.set(address, open + 1)
    socket.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1
      if (left > 0) perAddress.set(address, left)
      else perAddress.delete(address)
    })
  })
}
