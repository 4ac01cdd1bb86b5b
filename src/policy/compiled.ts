// What a compiled policy is: the immutable objects the request path, the admin listener and the
// lifecycle read. src/policy/compile.ts builds them from a checked document.
import type { AuthContext, AuthRule } from '../auth/authenticate.js'
import type { Issuer } from '../auth/issuer.js'
import type { CorsRule } from '../proxy/cors.js'
import type { HeaderCopy } from '../proxy/forward.js'
import type { HttpsRule } from '../proxy/https_only.js'
import type { IdentityOutput } from '../proxy/identity_headers.js'
import type { Upstream } from '../proxy/upstream.js'
import type { CompiledRevocation } from '../revocation/config.js'
import type { RouteTable } from '../routing/route_table.js'
import type { AdminSettings } from './admin_settings.js'
import type { ListenTls } from './tls_files.js'

export type { Upstream }

export interface Route {
  readonly index: number
  /** Its `name:`, else derived from methods, host and path (route_names.ts): the route label in metrics and logs. */
  readonly name: string
  readonly upstream: Upstream
  /** null when the route is `auth: none`. */
  readonly auth: AuthRule | null
  /** `mode: report`: the decision is logged and counted, and the request forwarded whatever it is. */
  readonly report: boolean
  readonly identity: IdentityOutput
  readonly forwardToken: boolean
  /** The route's CORS rule (its own, else the global one); null when CORS is off for it. */
  readonly cors: CorsRule | null
  /** `websocket: true`: upgrades are checked, then tunnelled to the upstream. */
  readonly websocket: boolean
  /** `grpc: true`: the route carries gRPC; its upstream speaks HTTP/2 (checked at load). */
  readonly grpc: boolean
  /** The largest request body; 0 for no limit. */
  readonly maxBodyBytes: number
  /** `max_grpc_timeout`: the longest deadline a gRPC call gets, in ms; 0 for no limit. */
  readonly maxGrpcTimeoutMs: number
  /** `allow_ambiguous_paths`: a path normalizePath marks ambiguous is forwarded rather than refused. */
  readonly allowAmbiguousPaths: boolean
  /** What forwarding never copies to the upstream on this route (token headers and cookies included); computed here, read per request. */
  readonly headerCopy: HeaderCopy
}

/** `limits:`, the slow-client and connection bounds; see docs/security.md, "Slow clients". */
export interface ClientLimits {
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  /** Bytes per second a streamed body must average over each window. */
  readonly minBodyRate: number
  readonly bodyRateWindowMs: number
  readonly sendTimeoutMs: number
  readonly maxConnections: number
  readonly maxConnectionsPerAddress: number
}

/** What the proxy listener speaks (`listen.protocols`); read when it opens, so a change applies at the next start. */
export interface ListenProtocols {
  readonly http1: boolean
  /** HTTP/2: with prior knowledge in clear (h2c), by ALPN over TLS (h2). */
  readonly http2: boolean
}

export interface CompiledPolicy {
  readonly file: string
  /** Absolute paths of the other files read at load (secret files, certificates, keys): a change to one is a policy change. */
  readonly files: readonly string[]
  /** sha256 of the policy text, to tell one loaded policy from another. */
  readonly hash: string
  /** `tls`: the certificate and key read at load; null for plain HTTP. */
  /** `reusePort`: with workers > 1, each worker listens itself (SO_REUSEPORT), else the primary hands out connections. */
  readonly listen: {
    readonly host: string
    readonly port: number
    readonly reusePort: boolean
    readonly tls: ListenTls | null
    readonly protocols: ListenProtocols
  }
  /** Node's limit on a request's header section (larger gets 431); applies from the next start. */
  readonly maxHeaderBytes: number
  /** The bounds on slow clients and on client connections (`limits:`); 0 turns one off. */
  readonly clientLimits: ClientLimits
  /** The global CORS rule, for responses that match no route; null without `cors:`. */
  readonly cors: CorsRule | null
  /** `require_https` and `trusted_proxies`. */
  readonly https: HttpsRule
  /** The admin listener (health, readiness, metrics, config, the status page); null when turned off. */
  readonly admin: AdminSettings | null
  readonly shutdown: { readonly drainDelayMs: number; readonly timeoutMs: number }
  /** Processes serving the proxy listener (`workers`, `auto` resolved); applies from the next start. */
  readonly workers: number
  /** Issuers whose keys must be loaded before /readyz says ready. */
  readonly requiredForReadiness: readonly Issuer[]
  /** The policy as loaded, secrets redacted: what GET /config shows. */
  readonly redacted: unknown
  readonly logLevel: string
  /** One access-log line per request (`log.access`). */
  readonly accessLog: boolean
  /** How lines write their time and level (`log.time`, `log.level_label`); applies from the next start. */
  readonly lineFormat: { readonly time: 'epoch' | 'iso'; readonly levelLabel: boolean }
  readonly routes: RouteTable<Route>
  readonly issuers: ReadonlyMap<string, Issuer>
  readonly upstreams: ReadonlyMap<string, Upstream>
  readonly stripIdentityHeaders: (headers: Record<string, unknown>) => void
  readonly rejectPathParameters: boolean
  /** Token limits and the verified-token cache; one cache per loaded policy. */
  readonly auth: AuthContext
  /** The revocation store (also at auth.revocation) and the admin API token; null without `revocation:`. */
  readonly revocation: CompiledRevocation | null
}

/**
 * Freezes a compiled value all the way down through plain objects, arrays and the values of
 * Maps. Anything else is left as it is: class instances hold live state that must keep changing
 * (JwksCache's keys, TokenCache's entries, a RevocationStore's set and connection, RouteTable's
 * index, a BlockList, Buffers of TLS material), and a Map or Set cannot be frozen by
 * Object.freeze anyway; their types say readonly instead.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v)
    return value
  }
  const proto = Object.getPrototypeOf(value) as unknown
  if (proto !== Object.prototype && proto !== null && proto !== Array.prototype) return value
  Object.freeze(value)
  for (const key of Object.keys(value)) {
    // Getters (an issuer's `ready`) are read live and never frozen through.
    const descriptor = Object.getOwnPropertyDescriptor(value, key)
    if (descriptor && 'value' in descriptor) deepFreeze(descriptor.value)
  }
  return value
}
