// A new HTTP/2 client session to an upstream, the one way the forwarder (./h2_upstream.ts) and
// the health checks (./upstream_health.ts) connect: prior knowledge for h2c; for h2, TLS offering
// ALPN h2 alone, verified with the upstream's CA and client certificate as every https upstream.
import http2, { type ClientHttp2Session } from 'node:http2'
import type { UpstreamTls } from '../policy/tls_files.js'

export function connectHttp2(origin: string, protocol: 'h2c' | 'h2' | 'http1', tls: UpstreamTls | null | undefined): ClientHttp2Session {
  return http2.connect(origin, {
    settings: { enablePush: false },
    ...(protocol === 'h2' ? { ALPNProtocols: ['h2'], rejectUnauthorized: true, ...tls } : {}),
  })
}
