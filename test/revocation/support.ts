// Shared pieces of the revocation tests: a policy with a revocation section and the admin API.
import { randomUUID } from 'node:crypto'
import type { DevIssuer } from '../../src/devkit/dev_issuer.js'
import type { EchoUpstream } from '../../src/devkit/echo_upstream.js'
import { API_ROUTE, bearer, get, policy } from '../support/harness.js'

export const ADMIN_TOKEN = 'admin-token-for-the-tests-0123456789'
export const ADMIN_ENV = { REVOCATION_ADMIN_TOKEN: ADMIN_TOKEN }

export const ROUTES = `${API_ROUTE}
  - { path: /once/**, upstream: orders, auth: { issuers: [idp] }, replay_protection: true }`

/** The harness policy plus `revocation:` (its fields indented by two spaces). */
export function revocationPolicy(idp: DevIssuer, up: EchoUpstream, fields: string, routes = ROUTES): string {
  return policy({ issuer: idp, upstream: up, routes, extra: `revocation:\n${fields}\n  admin_token: "\${REVOCATION_ADMIN_TOKEN}"` })
}

export function token(idp: DevIssuer, claims: Record<string, unknown> = {}, expiresInSeconds = 300): { token: string; jti: string } {
  const jti = randomUUID()
  return { token: idp.sign({ sub: 'alice', aud: 'orders-api', jti, ...claims }, { expiresInSeconds }), jti }
}

export async function status(url: string, jwt: string): Promise<number> {
  return (await get(url, bearer(jwt))).status
}

/** POST /revocations with the admin token (or `auth`; null: no Authorization header). */
export async function revoke(adminUrl: string, body: unknown, auth: string | null = ADMIN_TOKEN): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (auth !== null) headers.authorization = `Bearer ${auth}`
  const res = await fetch(`${adminUrl}/revocations`, { method: 'POST', headers, body: JSON.stringify(body) })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { status: res.status, json }
}

export async function stats(adminUrl: string): Promise<any> {
  return (await get(`${adminUrl}/revocations/stats`)).json
}
