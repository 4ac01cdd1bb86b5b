// Shared pieces of the revocation tests: a policy with a revocation section, polling with a
// bound, and the admin API.
import { randomUUID } from 'node:crypto'
import type { DevIssuer } from '../../src/devkit/dev_issuer.js'
import type { EchoUpstream } from '../../src/devkit/echo_upstream.js'
import { bearer, get, policy, sleep } from '../support/harness.js'

export const ADMIN_TOKEN = 'admin-token-for-the-tests-0123456789'
export const ADMIN_ENV = { REVOCATION_ADMIN_TOKEN: ADMIN_TOKEN }

export const ROUTES = `  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
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

/** Polls `check` every 20 ms until it holds or `withinMs` passed; returns the ms it took, or -1. */
export async function within(withinMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now()
  for (let i = 0; i < Math.ceil(withinMs / 20) + 1; i++) {
    if (await check()) return Date.now() - started
    if (Date.now() - started > withinMs) break
    await sleep(20)
  }
  return -1
}

/** POST /revocations with the admin token (or `auth`; null: no Authorization header). */
export async function revoke(adminUrl: string, body: unknown, auth: string | null = ADMIN_TOKEN): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (auth !== null) headers.authorization = `Bearer ${auth}`
  const res = await fetch(`${adminUrl}/revocations`, { method: 'POST', headers, body: JSON.stringify(body) })
  const text = await res.text()
  let json: unknown
  try { json = JSON.parse(text) } catch { json = text }
  return { status: res.status, json }
}

export async function stats(adminUrl: string): Promise<any> {
  return (await get(`${adminUrl}/revocations/stats`)).json
}
