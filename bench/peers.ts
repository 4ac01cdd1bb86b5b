// What the peer rows need: HAProxy's configuration and certificate, the express peer's packages,
// and the revocation list of issue 5's scenario.
import { execFileSync } from 'node:child_process'
import type { KeyObject } from 'node:crypto'
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** `count` entries: half jti (none a bench token's), half subjects `user-N` revoked before an hour ago (so the bench tokens, issued later, pass). */
export function revocationList(count: number): object[] {
  const now = Math.floor(Date.now() / 1000)
  return Array.from({ length: count }, (_, i) =>
    i % 2 === 0 ? { jti: `revoked-${i.toString(36)}-0123456789abcdef`, exp: now + 24 * 3600 } : { sub: `user-${(i - 1) / 2}`, before: now - 3600 },
  )
}

/** The x.y.z version a program prints for -v, or undefined. */
export function versionOf(program: string): string | undefined {
  try {
    return /version (\d+\.\d+(?:\.\d+)?)/i.exec(execFileSync(program, ['-v'], { encoding: 'utf8', timeout: 5000 }))?.[1]
  } catch {
    return undefined
  }
}

export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d) return d
  }
  return 0
}

/**
 * HAProxy with jwt_verify, checking what jwtgate's bench policy checks: RS256 only, the issuer,
 * the audience, exp and the signature; it forwards the subject as X-User-Id, drops the token and
 * adds X-Forwarded-For. It has no verified-token cache: every request verifies a signature.
 * jwt_verify takes the public key as a PEM file (Debian's 2.6.12 refuses a certificate there:
 * "file not found", and -5 at run time). Returns the config file.
 */
export function haproxyFiles(dir: string, o: { port: number; upstream: string; issuer: string; audience: string; publicKey: KeyObject }): string {
  mkdirSync(dir, { recursive: true })
  const cert = path.join(dir, 'public.pem')
  writeFileSync(cert, o.publicKey.export({ type: 'spki', format: 'pem' }))
  const up = new URL(o.upstream)
  const config = path.join(dir, 'haproxy.cfg')
  writeFileSync(
    config,
    `global
  nbthread 1
  maxconn 4000

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 120s
  option http-keep-alive

frontend bench
  bind 127.0.0.1:${o.port}
  option forwardfor
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny deny_status 401 unless { var(txn.bearer) -m found }
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('$.iss') -m str "${o.issuer}" }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('$.aud') -m str "${o.audience}" }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request deny deny_status 401 if { date(),sub(txn.exp) -m int ge 0 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"${cert}") -m int 1 }
  http-request set-header x-user-id %[var(txn.bearer),jwt_payload_query('$.sub')]
  http-request del-header authorization
  default_backend upstream

backend upstream
  http-reuse always
  server up ${up.hostname}:${up.port} maxconn 128
`,
  )
  return config
}

const EXPRESS_PEER = fileURLToPath(new URL('./express_peer/', import.meta.url))
/** The express peer's server, whose packages installExpressPeer puts beside it. */
export const EXPRESS_PEER_SERVER = path.join(EXPRESS_PEER, 'server.mjs')

/**
 * The express peer's packages, from its own lockfile (bench/express_peer/), so its row is always
 * there without making express a dependency of jwtgate. Installed again when the lockfile is newer
 * than the installation. Returns why the peer cannot run, or undefined when it can.
 */
export function installExpressPeer(): string | undefined {
  const installed = path.join(EXPRESS_PEER, 'node_modules/.package-lock.json')
  if (existsSync(installed) && statSync(installed).mtimeMs >= statSync(path.join(EXPRESS_PEER, 'package-lock.json')).mtimeMs) return undefined
  console.error('bench: installing the express peer (npm ci in bench/express_peer)')
  try {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: EXPRESS_PEER, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 })
    return undefined
  } catch (err) {
    const output = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()
    return `npm ci in bench/express_peer failed: ${output.split('\n').at(-1)}`
  }
}
