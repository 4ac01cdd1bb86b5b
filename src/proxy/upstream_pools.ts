// Connections to the upstreams: one undici Pool per upstream origin, built from that upstream's
// settings (`connections`, and for https its `tls`: a private CA, a client certificate). This is
// the dispatcher reply-from sends through. reply-from takes a single dispatcher for the whole
// app (see @fastify/reply-from/lib/request.js, `isUndiciInstance`), so this one picks the pool
// by the request's origin; the compiler makes sure one origin has one set of settings.
// A request waits for a free connection at most its timeout (reply-from passes the route's
// upstream timeout as headersTimeout), then fails with UpstreamBusy: undici's Pool queues without
// a bound, and its headers and body timeouts start only once a connection writes the request.
import { Dispatcher, Pool } from 'undici'
import type { Upstream } from './upstream.js'

/** What the pools are made from: a compiled policy's upstreams. */
type Upstreams = { readonly upstreams: ReadonlyMap<string, Upstream> }

// The connect limit of every upstream; `timeout` covers the wait for the answer.
export const CONNECT_TIMEOUT_MS = 5000

/** The TLS options node:tls takes for an upstream: always verified, with its own CA and client certificate if set. */
export function upstreamTlsOptions(upstream: Upstream): { rejectUnauthorized: true; ca?: Buffer; cert?: Buffer; key?: Buffer } {
  // reply-from's default is rejectUnauthorized: false (notes/dependencies.md §5); never here.
  return { rejectUnauthorized: true, ...upstream.tls }
}

export class UpstreamPools extends Dispatcher {
  private pools = new Map<string, { key: string; pool: Pool }>()

  constructor(policy: Upstreams) {
    super()
    this.update(policy)
  }

  /**
   * Makes the pools those of `policy`: an upstream whose settings did not change keeps its
   * pool and its open connections; a changed or removed one gets its old pool closed once the
   * requests on it have finished.
   */
  update(policy: Upstreams): void {
    const next = new Map<string, { key: string; pool: Pool }>()
    for (const upstream of policy.upstreams.values()) {
      if (next.has(upstream.origin)) continue
      const current = this.pools.get(upstream.origin)
      next.set(upstream.origin, current?.key === upstream.poolKey ? current : { key: upstream.poolKey, pool: newPool(upstream) })
    }
    for (const [origin, entry] of this.pools) {
      if (next.get(origin) !== entry) void entry.pool.close().catch(() => {})
    }
    this.pools = next
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const entry = this.pools.get(String(options.origin))
    // Only a request decided just before a reload removed its upstream gets here; undici's
    // request() hands the error to its callback, and the client gets a 502.
    if (!entry) throw new Error(`no connection pool for ${String(options.origin)}: the upstream was removed by a reload`)
    const waitMs = options.headersTimeout
    return entry.pool.dispatch(options, waitMs ? new QueueBound(handler as LegacyHandler, waitMs) : handler)
  }

  override async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((e) => e.pool.close()))
  }

  override async destroy(): Promise<void> {
    await Promise.all([...this.pools.values()].map((e) => e.pool.destroy()))
  }
}

function newPool(upstream: Upstream): Pool {
  return new Pool(upstream.origin, {
    connections: upstream.connections,
    pipelining: 1,
    connect: { timeout: CONNECT_TIMEOUT_MS, ...(upstream.origin.startsWith('https:') ? upstreamTlsOptions(upstream) : {}) },
  })
}

/** No connection to the upstream became free within the request's timeout. */
export class UpstreamBusy extends Error {
  constructor(readonly waitedMs: number) {
    super(`no connection to the upstream became free within ${waitedMs} ms`)
    this.name = 'UpstreamBusy'
  }
}

/** Whether a forwarding error (as reply-from reports it, the cause wrapped) is a queue timeout. */
export function isUpstreamBusy(error: Error): boolean {
  return error instanceof UpstreamBusy || error.cause instanceof UpstreamBusy
}

// The handler interface undici's request() hands to a dispatcher (its RequestHandler).
type LegacyHandler = {
  onConnect?(abort: (err?: Error) => void, context?: unknown): void
  onError?(err: Error): void
  onUpgrade?(statusCode: number, headers: unknown, socket: unknown): void
  onResponseStarted?(): void
  onHeaders?(statusCode: number, headers: unknown, resume: () => void, statusText: string): boolean
  onData?(chunk: Buffer): boolean
  onComplete?(trailers: unknown): void
  onBodySent?(chunk: unknown): void
  onRequestSent?(): void
}

/**
 * Fails a request that is still waiting for a connection when its time is up: the caller gets
 * UpstreamBusy at once, and when the pool later hands it a connection it is aborted there
 * before anything is written. Once connected, every call passes through unchanged.
 */
class QueueBound implements LegacyHandler {
  private timer: NodeJS.Timeout | undefined
  private expired = false

  constructor(
    private readonly inner: LegacyHandler,
    private readonly waitMs: number,
  ) {
    this.timer = setTimeout(() => this.expire(), waitMs)
  }

  private expire(): void {
    this.timer = undefined
    this.expired = true
    this.inner.onError?.(new UpstreamBusy(this.waitMs))
  }

  onConnect(abort: (err?: Error) => void, context?: unknown): void {
    if (this.expired) {
      abort(new UpstreamBusy(this.waitMs))
      return
    }
    clearTimeout(this.timer)
    this.timer = undefined
    this.inner.onConnect?.(abort, context)
  }

  onError(err: Error): void {
    clearTimeout(this.timer)
    // Told already: the request was given up while it waited.
    if (!this.expired) this.inner.onError?.(err)
  }

  onUpgrade(statusCode: number, headers: unknown, socket: unknown): void {
    this.inner.onUpgrade?.(statusCode, headers, socket)
  }

  onResponseStarted(): void {
    this.inner.onResponseStarted?.()
  }

  onHeaders(statusCode: number, headers: unknown, resume: () => void, statusText: string): boolean {
    return this.inner.onHeaders?.(statusCode, headers, resume, statusText) ?? true
  }

  onData(chunk: Buffer): boolean {
    return this.inner.onData?.(chunk) ?? true
  }

  onComplete(trailers: unknown): void {
    this.inner.onComplete?.(trailers)
  }

  onBodySent(chunk: unknown): void {
    this.inner.onBodySent?.(chunk)
  }

  onRequestSent(): void {
    this.inner.onRequestSent?.()
  }
}
