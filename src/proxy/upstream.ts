// The policy's `upstreams:` section: where routes forward to, with parsed URLs and the settings
// each one's connection pool (upstream_pools.ts) is built from.
import { createHash } from 'node:crypto'
import { isHttpUrl, redactUrl } from '../http/urls.js'
import { durationMs } from '../policy/duration.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import type { PolicyFiles } from '../policy/policy_files.js'
import { UpstreamSchema, type UpstreamDocument } from '../policy/schema.js'
import { compileUpstreamTls, type UpstreamTls } from '../policy/tls_files.js'
import { compileUpstreamHealth, type UpstreamHealthRule } from './upstream_health.js'

export interface Upstream {
  readonly name: string
  /** scheme://host:port */
  readonly origin: string
  /** How requests reach it: HTTP/1.1 (undici), HTTP/2 in clear (h2c) or over TLS (h2) (node:http2, ./h2_upstream.ts). */
  readonly protocol: UpstreamProtocol
  /** The URL's own path without a trailing slash, prefixed to every forwarded path. */
  readonly basePath: string
  readonly timeoutMs: number
  /** The most connections open to it at once. */
  readonly connections: number
  /** For https: a private CA and a client certificate; null for the defaults (system CAs, no client certificate). */
  readonly tls: UpstreamTls | null
  /**
   * Everything the connection pool is built from (origin, connections, TLS material): a reload
   * keeps the pool of an upstream whose key is unchanged.
   */
  readonly poolKey: string
  /** `health:`, checked in the background for /readyz (./upstream_health.ts); null without one. */
  readonly health: UpstreamHealthRule | null
}

export type UpstreamProtocol = 'http1' | 'h2c' | 'h2'

const DEFAULT = defaultsOf(UpstreamSchema, ['connections', 'timeout', 'protocol'])

/** Every upstream that compiles, by name; each one that does not is said. */
export function compileUpstreams(specs: Readonly<Record<string, UpstreamDocument>>, files: PolicyFiles, problem: OnProblem): Map<string, Upstream> {
  const upstreams = new Map<string, Upstream>()
  const poolKeyByOrigin = new Map<string, [string, string]>()
  for (const [name, spec] of Object.entries(specs)) {
    const upstream = compileUpstream(name, spec, ['upstreams', name], files, problem)
    if (!upstream) continue
    upstreams.set(name, upstream)
    // Connections are pooled per origin (undici dispatches by origin), so one origin has one
    // set of connection settings.
    const same = poolKeyByOrigin.get(upstream.origin)
    if (same && same[1] !== upstream.poolKey) {
      problem(['upstreams', name], `upstreams.${same[0]} has the same origin (${upstream.origin}) with other connections or tls settings; give both the same`)
    }
    poolKeyByOrigin.set(upstream.origin, [name, upstream.poolKey])
  }
  return upstreams
}

export function compileUpstream(name: string, spec: UpstreamDocument, at: DocPath, files: PolicyFiles, problem: OnProblem): Upstream | undefined {
  if (!isHttpUrl(spec.url)) {
    problem([...at, 'url'], `upstream url ${JSON.stringify(redactUrl(spec.url))} is not an http(s) URL`)
    return undefined
  }
  const url = new URL(spec.url)
  if (url.username || url.password || url.search || url.hash) {
    problem([...at, 'url'], 'upstream url must not carry credentials, a query or a fragment')
    return undefined
  }
  const protocol = spec.protocol ?? DEFAULT.protocol
  // h2c is HTTP/2 in clear, h2 over TLS (RFC 9113 §3): the URL's scheme must say the same.
  if ((protocol === 'h2' && url.protocol !== 'https:') || (protocol === 'h2c' && url.protocol !== 'http:')) {
    problem([...at, 'protocol'], `protocol ${protocol} needs an ${protocol === 'h2' ? 'https' : 'http'}:// url (h2 is HTTP/2 over TLS, h2c HTTP/2 in clear)`)
    return undefined
  }
  const tls = compileUpstreamTls(spec.tls, url.protocol === 'https:', [...at, 'tls'], files, problem)
  if (tls === undefined) return undefined
  const health = compileUpstreamHealth(spec.health, protocol, [...at, 'health'], problem)
  if (health === undefined) return undefined
  const connections = spec.connections ?? DEFAULT.connections
  const hash = createHash('sha256').update(`${url.origin}\n${connections}\n${protocol}`)
  for (const pem of [tls?.ca, tls?.cert, tls?.key]) hash.update('\n').update(pem ?? '')
  return {
    name,
    protocol,
    origin: url.origin,
    basePath: url.pathname.replace(/\/+$/, ''),
    timeoutMs: durationMs(spec.timeout ?? DEFAULT.timeout),
    connections,
    tls,
    poolKey: hash.digest('hex'),
    health,
  }
}
