// OpenID Connect Discovery 1.0: an issuer's key set URL read from its provider metadata, so a
// policy names only the issuer. The document is refused when it names another issuer (§4.3:
// it must be identical to the one the metadata was asked for, which stops a compromised or
// misconfigured metadata host from vouching for someone else's keys) and when its jwks_uri is
// not https (plain http only on loopback, for tests and local development).
import type { Agent } from 'undici'
import { redactUrl } from '../http/urls.js'
import { fetchJson, type FetchSeen } from './fetch_json.js'

const MAX_DOCUMENT_BYTES = 256 * 1024

/** §4: the issuer without one terminating "/", then /.well-known/openid-configuration. */
export function discoveryUrl(issuer: string): string {
  return `${issuer.endsWith('/') ? issuer.slice(0, -1) : issuer}/.well-known/openid-configuration`
}

/** The jwks_uri of the issuer's discovery document; throws with a reason to log when it cannot be used. */
export async function discoverJwksUri(issuer: string, agent: Agent, timeoutMs: number, seen?: FetchSeen): Promise<string> {
  let body: unknown
  try {
    ;({ body } = await fetchJson(discoveryUrl(issuer), agent, timeoutMs, MAX_DOCUMENT_BYTES, 'application/json', seen))
  } catch (err) {
    const { name, message } = err as Error
    throw new Error(`cannot read the discovery document: ${name === 'TimeoutError' || name === 'AbortError' ? 'timed out' : message}`)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('discovery document is not a JSON object')
  const document = body as Record<string, unknown>
  if (document.issuer !== issuer) {
    throw new Error(`discovery document names issuer ${shown(document.issuer)}, not ${JSON.stringify(issuer)}`)
  }
  const jwksUri = document.jwks_uri
  if (typeof jwksUri !== 'string') throw new Error('discovery document has no jwks_uri')
  const why = unsafeUrl(jwksUri)
  if (why) throw new Error(`discovery document jwks_uri ${shown(redactUrl(jwksUri))} ${why}`)
  return jwksUri
}

/** Why a URL may not be fetched for keys, or undefined when it may: https, or http on loopback. */
export function unsafeUrl(text: string): string | undefined {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return 'is not a URL'
  }
  if (url.username || url.password) return 'carries credentials'
  if (url.protocol === 'https:') return undefined
  if (url.protocol === 'http:' && isLoopback(url.hostname)) return undefined
  return url.protocol === 'http:' ? 'is not https (http is accepted only on loopback)' : 'is not https'
}

export function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname)
}

/** A value from the network, quoted and cut short for a log line. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 120 ? `${text.slice(0, 120)}…` : text
}
