// Connections to the upstreams: one undici Pool per upstream origin, built from that upstream's
// settings (`connections`, and for https its `tls`: a private CA, a client certificate); the
// compiler makes sure one origin has one set of settings. Requests are sent on them by
// upstream_exchange.ts, which also bounds the wait for a free connection (UpstreamBusy).
import { Pool } from 'undici'
import { H2Upstream } from './h2_upstream.js'
import type { Upstream } from './upstream.js'

/** What the pools are made from: a compiled policy's upstreams. */
type Upstreams = { readonly upstreams: ReadonlyMap<string, Upstream> }

// The connect limit of every upstream; `timeout` covers the wait for the answer.
export const CONNECT_TIMEOUT_MS = 5000

/** The TLS options node:tls takes for an upstream: always verified, with its own CA and client certificate if set. */
export function upstreamTlsOptions(upstream: Upstream): { rejectUnauthorized: true; ca?: Buffer; cert?: Buffer; key?: Buffer } {
  // Never turned off (reply-from's own default was rejectUnauthorized: false: notes/dependencies.md §5).
  return { rejectUnauthorized: true, ...upstream.tls }
}

/** One origin's connections as the status page shows them; `streams` only for an HTTP/2 upstream. */
export interface PoolStats {
  origin: string
  connected: number
  inUse: number
  queued: number
  streams?: number
}

/** An origin's connections: an undici Pool (HTTP/1.1) or HTTP/2 sessions (./h2_upstream.ts). */
type Entry = { key: string; pool: Pool | H2Upstream }

export class UpstreamPools {
  private pools = new Map<string, Entry>()

  constructor(policy: Upstreams) {
    this.update(policy)
  }

  /**
   * Makes the pools those of `policy`: an upstream whose settings did not change keeps its
   * pool and its open connections; a changed or removed one gets its old pool closed once the
   * requests on it have finished.
   */
  update(policy: Upstreams): void {
    const next = new Map<string, Entry>()
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

  /**
   * The pool of an origin; undefined only for a request decided just before a reload removed
   * its upstream (the client gets a 502).
   */
  pool(origin: string): Pool | undefined {
    const pool = this.pools.get(origin)?.pool
    return pool instanceof Pool ? pool : undefined
  }

  /** The HTTP/2 sessions of an origin with protocol h2c or h2; undefined as for pool(). */
  h2(origin: string): H2Upstream | undefined {
    const pool = this.pools.get(origin)?.pool
    return pool instanceof H2Upstream ? pool : undefined
  }

  /**
   * Each origin's connections, for the status page: open, in use (carrying a request), and
   * requests waiting for one; for an HTTP/2 upstream, its sessions so, and the streams open on them.
   */
  stats(): PoolStats[] {
    return [...this.pools].map(([origin, { pool }]) => {
      if (pool instanceof H2Upstream) {
        const { sessions, busy, streams, queued } = pool.stats()
        return { origin, connected: sessions, inUse: busy, queued, streams }
      }
      const { connected, free, queued } = pool.stats
      return { origin, connected, inUse: connected - free, queued }
    })
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((e) => e.pool.close()))
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.pools.values()].map((e) => e.pool.destroy()))
  }
}

function newPool(upstream: Upstream): Pool | H2Upstream {
  if (upstream.protocol !== 'http1') return new H2Upstream(upstream, CONNECT_TIMEOUT_MS)
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

/** Whether a forwarding error is a queue timeout. */
export function isUpstreamBusy(error: Error): boolean {
  return error instanceof UpstreamBusy
}
