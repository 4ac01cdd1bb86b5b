// A multi-tenant issuer: one IdP whose tokens carry a per-tenant iss, such as Microsoft Entra's
// `https://login.microsoftonline.com/{tid}/v2.0`. The `{tid}` part must equal the token's own
// `tid` claim (Microsoft's guidance for multi-tenant apps), and, when the policy lists tenants,
// be one of them.
import type { DocPath, OnProblem } from '../policy/problems.js'
import { deny, failedCheck, oneOf, type Denial } from '../http/denial.js'

export const TENANT_PLACEHOLDER = '{tid}'

export interface IssuerTemplate {
  /** The issuer as written, with `{tid}`. */
  readonly text: string
  readonly prefix: string
  readonly suffix: string
  /** null: every tenant of the IdP. */
  readonly tenants: ReadonlySet<string> | null
}

/**
 * The template of an issuer's `issuer` value (the issuer is at `at`): null when it has no
 * `{tid}`, undefined after saying why it cannot be used.
 */
export function parseIssuerTemplate(text: string, tenants: readonly string[] | undefined, at: DocPath, problem: OnProblem): IssuerTemplate | null | undefined {
  const fail = (message: string, field = 'issuer'): undefined => {
    problem([...at, field], message)
    return undefined
  }
  const index = text.indexOf(TENANT_PLACEHOLDER)
  if (index < 0) return tenants ? fail('tenants goes with an issuer that has {tid} in it', 'tenants') : null
  if (text.indexOf(TENANT_PLACEHOLDER, index + 1) >= 0) return fail('the issuer may contain {tid} once')
  const prefix = text.slice(0, index)
  const suffix = text.slice(index + TENANT_PLACEHOLDER.length)
  if (prefix.length === 0) return fail('the issuer cannot start with {tid}')
  const bad = tenants?.find((t) => !isTenant(t))
  if (bad !== undefined) return fail(`tenant ${JSON.stringify(bad)} cannot appear in an iss: it is empty or has "/", whitespace, "{" or "}"`)
  return { text, prefix, suffix, tenants: tenants ? new Set(tenants) : null }
}

/**
 * Whether `iss` is one of this template's issuers: undefined when it is not shaped like them
 * (another issuer's token), true when it is and the tenant is accepted, a denial otherwise.
 * `tid` is the token's claim; the signature is checked afterwards over the same payload.
 */
export function matchTenant(template: IssuerTemplate, iss: string, tid: unknown): true | Denial | undefined {
  const tenant = tenantIn(template, iss)
  if (tenant === undefined) return undefined
  if (tid !== tenant)
    return deny(
      'wrong_issuer',
      'the token tid claim does not match its issuer',
      failedCheck('tid', tid, `must be ${JSON.stringify(tenant)}, the tenant in its iss`),
    )
  if (template.tenants && !template.tenants.has(tenant))
    return deny(
      'wrong_issuer',
      'the token tenant is not accepted here',
      failedCheck('iss', iss, `must name a tenant of ${oneOf(template.tenants)} in ${template.text}`),
    )
  return true
}

/** The tenant part of `iss` when it has the template's shape. */
export function tenantIn(template: IssuerTemplate, iss: string): string | undefined {
  const { prefix, suffix } = template
  if (iss.length <= prefix.length + suffix.length || !iss.startsWith(prefix) || !iss.endsWith(suffix)) return undefined
  const tenant = iss.slice(prefix.length, iss.length - suffix.length)
  return isTenant(tenant) ? tenant : undefined
}

/** The iss values the verifier accepts: the listed tenants, or the template's shape. */
export function allowedIssOf(template: IssuerTemplate): string[] | RegExp {
  if (template.tenants) return [...template.tenants].map((t) => template.prefix + t + template.suffix)
  return new RegExp(`^${escapeRegExp(template.prefix)}[^/\\s{}]+${escapeRegExp(template.suffix)}$`)
}

function isTenant(text: string): boolean {
  return text.length > 0 && !/[/\s{}]/.test(text)
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}
