// The client certificate of a request, as the thumbprint a certificate-bound token's
// `cnf.x5t#S256` names (RFC 8705 §3.1: base64url SHA-256 of the DER). From this connection's TLS
// handshake (listen.tls.client_certificates), or, from a peer in trusted_proxies only, from the
// header a TLS-terminating proxy sets (client_certificate_header): Envoy's
// x-forwarded-client-cert, or a URL-encoded PEM (nginx's $ssl_client_escaped_cert, AWS ALB's
// X-Amzn-Mtls-Clientcert). Anyone else's header is ignored: a client could write it.
import { createHash, X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { ClientCertificateHeaderDocument } from '../policy/schema.js'
import { fromTrustedProxy, type HttpsRule } from './https_only.js'

export interface ClientCertificateRule {
  /** Only certificates the listener's CA verified count (listen.tls.client_certificates.ca_file). */
  readonly verifiedOnly: boolean
  /** The header of a trusted proxy, lower case, and its format; null when none. */
  readonly header: { readonly name: string; readonly format: ClientCertificateHeaderDocument['format'] } | null
  readonly https: HttpsRule
}

// A connection's certificate is the same for all its requests: hashed once.
const bySocket = new WeakMap<Socket, string | null>()

/** The thumbprint of the request's client certificate; undefined when it presented none that counts. */
export function clientCertificate(raw: IncomingMessage, rule: ClientCertificateRule): string | undefined {
  // Behind a trusted proxy, the certificate is the one the proxy was shown, never the proxy's own.
  if (rule.header && fromTrustedProxy(raw, rule.https)) {
    const value = raw.headers[rule.header.name]
    if (typeof value !== 'string') return undefined
    return rule.header.format === 'xfcc' ? fromXfcc(value) : fromEscapedPem(value)
  }
  if (!('encrypted' in raw.socket)) return undefined
  const socket = raw.socket as TLSSocket
  let known = bySocket.get(socket)
  if (known === undefined) {
    const certificate = socket.getPeerCertificate()
    known = certificate?.raw && (socket.authorized || !rule.verifiedOnly) ? thumbprint(certificate.raw) : null
    bySocket.set(socket, known)
  }
  return known ?? undefined
}

function thumbprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('base64url')
}

/**
 * Envoy's x-forwarded-client-cert: `;`-separated `key=value` pairs, values optionally quoted.
 * `Hash` is the hex SHA-256 of the certificate's DER; `Cert` the URL-encoded PEM. Several
 * comma-separated elements (proxies appending in turn) leave it unclear whose certificate is
 * meant: none counts.
 */
export function fromXfcc(value: string): string | undefined {
  const elements = splitOutsideQuotes(value, ',')
  if (elements.length !== 1) return undefined
  let hash: string | undefined
  let cert: string | undefined
  for (const pair of splitOutsideQuotes(elements[0]!, ';')) {
    const eq = pair.indexOf('=')
    if (eq < 0) continue
    const key = pair.slice(0, eq).trim().toLowerCase()
    let text = pair.slice(eq + 1).trim()
    if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) text = text.slice(1, -1)
    if (key === 'hash') hash = text
    else if (key === 'cert') cert = text
  }
  if (hash !== undefined) return /^[0-9a-fA-F]{64}$/.test(hash) ? Buffer.from(hash, 'hex').toString('base64url') : undefined
  return cert === undefined ? undefined : fromEscapedPem(cert)
}

/** A URL-encoded PEM certificate (or its base64 body without the BEGIN and END lines, as Traefik sends). */
export function fromEscapedPem(value: string): string | undefined {
  let text: string
  try {
    text = decodeURIComponent(value)
  } catch {
    return undefined
  }
  try {
    const certificate = text.includes('-----BEGIN') ? new X509Certificate(text) : new X509Certificate(Buffer.from(text.replace(/\s+/g, ''), 'base64'))
    return thumbprint(certificate.raw)
  } catch {
    return undefined
  }
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const out: string[] = []
  let quoted = false
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '"' && text[i - 1] !== '\\') quoted = !quoted
    else if (c === separator && !quoted) {
      out.push(text.slice(start, i))
      start = i + 1
    }
  }
  out.push(text.slice(start))
  return out.filter((part) => part.trim().length > 0)
}
