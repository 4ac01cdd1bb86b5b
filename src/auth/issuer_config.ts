// The policy's `issuers:` section: who may sign tokens, with which keys and algorithms, read from
// where. Discovery, multi-tenant templates and the rule that one iss maps to one issuer are
// checked here; a reload keeps an unchanged issuer (and its warm key set).
import type { Logger } from 'pino'
import { isHttpUrl, redactUrl } from '../http/urls.js'
import { durationMs } from '../policy/duration.js'
import { readSecretBesidePolicy, type PolicyFiles } from '../policy/policy_files.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import {
  BindingSchema,
  HMAC_ALGORITHMS,
  IssuerSchema,
  JwksTuningSchema,
  type BindingDocument,
  type IssuerDocument,
  type TokenSourceDocument,
} from '../policy/schema.js'
import type { BindingRule } from './binding_rule.js'
import { unsafeUrl } from './discovery.js'
import { jwksIssuer, secretIssuer, type Issuer, type IssuerSecret, type IssuerSettings } from './issuer.js'
import { allowedIssOf, parseIssuerTemplate, tenantIn } from './issuer_template.js'
import { DEFAULT_TOKEN_SOURCES, sourcePlace } from './token_sources.js'

const DEFAULT = defaultsOf(IssuerSchema, ['audience_claim', 'clock_skew', 'require_exp'])
const BINDING_DEFAULT = defaultsOf(BindingSchema, ['required'])
const JWKS_DEFAULT = defaultsOf(JwksTuningSchema, ['timeout', 'cooldown', 'min_age', 'max_age'])

// What each JWKS issuer was built from, so a reload can keep an unchanged issuer (and its warm
// key set) instead of fetching its keys again.
const builtFrom = new WeakMap<Issuer, string>()

/**
 * Every issuer that compiles, by name; each one that does not is said. With `previous` (a
 * reload), a key-set issuer whose settings did not change is kept as it is, with its caches.
 */
export function compileIssuers(
  specs: Readonly<Record<string, IssuerDocument>>,
  files: PolicyFiles,
  log: Logger,
  problem: OnProblem,
  previous?: ReadonlyMap<string, Issuer>,
): Map<string, Issuer> {
  const issuers = new Map<string, Issuer>()
  const issuerNameByIss = new Map<string, string>()
  for (const [name, spec] of Object.entries(specs)) {
    const at: DocPath = ['issuers', name]
    ;[spec.issuer, ...(spec.issuer_aliases ?? [])].forEach((iss, i) => {
      const sameIss = issuerNameByIss.get(iss)
      if (sameIss)
        problem(
          i === 0 ? [...at, 'issuer'] : [...at, 'issuer_aliases', i - 1],
          `issuer "${iss}" is already configured as issuers.${sameIss}; one iss value must map to one issuer`,
        )
      issuerNameByIss.set(iss, name)
    })
    const kept = previous?.get(name)
    if (kept && isRemote(spec) && builtFrom.get(kept) === JSON.stringify(spec)) {
      issuers.set(name, kept)
      continue
    }
    const issuer = compileIssuer(name, spec, files, log, (where, m) => problem([...at, ...where], m))
    if (issuer) {
      issuers.set(name, issuer)
      builtFrom.set(issuer, JSON.stringify(spec))
    }
  }
  checkTemplateOverlaps(issuers, problem)
  return issuers
}

/** Issuers whose keys must be loaded before /readyz says ready: key sets not marked optional_at_startup. */
export function requiredForReadiness(specs: Readonly<Record<string, IssuerDocument>>, issuers: ReadonlyMap<string, Issuer>): Issuer[] {
  return Object.entries(specs).flatMap(([name, spec]) => {
    const issuer = issuers.get(name)
    return issuer && isRemote(spec) && !spec.optional_at_startup ? [issuer] : []
  })
}

/** Whether an issuer's keys come over the network (a key set, directly or through discovery). */
function isRemote(spec: IssuerDocument): boolean {
  return spec.jwks_uri !== undefined || spec.discovery === true
}

function compileIssuer(name: string, spec: IssuerDocument, files: PolicyFiles, log: Logger, problem: OnProblem): Issuer | undefined {
  const sources = (['jwks_uri', 'discovery', 'secret', 'secret_file', 'secrets'] as const).filter((k) => spec[k] !== undefined && spec[k] !== false)
  if (sources.length !== 1) {
    problem(
      [],
      `issuer needs exactly one key source: jwks_uri, discovery, secret, secret_file or secrets${sources.length ? ` (found ${sources.join(', ')})` : ''}`,
    )
    return undefined
  }
  const parsed = parseIssuerTemplate(spec.issuer, spec.tenants, [], problem)
  if (parsed === undefined) return undefined
  const template = parsed ?? undefined
  if (template && spec.issuer_aliases) {
    problem(['issuer_aliases'], 'issuer_aliases cannot go with a multi-tenant issuer ({tid} in issuer)')
    return undefined
  }
  if (!checkTokenSources(spec.token_sources, ['token_sources'], problem)) return undefined
  const hmac = spec.algorithms.filter((a) => (HMAC_ALGORITHMS as readonly string[]).includes(a))
  const exactIss = template ? [] : [spec.issuer, ...(spec.issuer_aliases ?? [])]
  const settings: IssuerSettings = {
    name,
    issuer: spec.issuer,
    exactIss,
    template,
    allowedIss: template ? allowedIssOf(template) : exactIss.length > 1 ? exactIss : spec.issuer,
    audiences: spec.audiences,
    audienceClaim: spec.audience_claim ?? DEFAULT.audience_claim,
    algorithms: spec.algorithms,
    clockSkewMs: durationMs(spec.clock_skew ?? DEFAULT.clock_skew),
    requireExp: spec.require_exp ?? DEFAULT.require_exp,
    tokenSources: spec.token_sources ?? DEFAULT_TOKEN_SOURCES,
    binding: compileBinding(spec.binding),
  }
  if (isRemote(spec)) {
    // A key set is public; an HMAC algorithm over it would let anyone holding it sign.
    if (hmac.length) {
      problem(['algorithms'], `${hmac.join(', ')} cannot be used with a ${sources[0]}; HMAC issuers take a secret`)
      return undefined
    }
    const uri = spec.jwks_uri !== undefined ? spec.jwks_uri : discoverySource(spec, template !== undefined, ['issuer'], problem)
    if (uri === undefined) return undefined
    if (typeof uri === 'string' && !isHttpUrl(uri)) {
      problem(['jwks_uri'], `jwks_uri ${JSON.stringify(redactUrl(uri))} is not an http(s) URL`)
      return undefined
    }
    const jwks = {
      uri,
      timeoutMs: durationMs(spec.jwks?.timeout ?? JWKS_DEFAULT.timeout),
      cooldownMs: durationMs(spec.jwks?.cooldown ?? JWKS_DEFAULT.cooldown),
      minAgeMs: durationMs(spec.jwks?.min_age ?? JWKS_DEFAULT.min_age),
      maxAgeMs: durationMs(spec.jwks?.max_age ?? JWKS_DEFAULT.max_age),
    }
    if (jwks.timeoutMs <= 0) {
      problem(['jwks', 'timeout'], 'jwks.timeout must be more than 0')
      return undefined
    }
    if (jwks.minAgeMs > jwks.maxAgeMs) {
      problem(['jwks', 'min_age'], `jwks.min_age (${jwks.minAgeMs} ms) is more than jwks.max_age (${jwks.maxAgeMs} ms)`)
      return undefined
    }
    return jwksIssuer(settings, jwks, log)
  }
  if (hmac.length !== spec.algorithms.length) {
    problem(['algorithms'], 'an issuer with a shared secret accepts only HS256, HS384 or HS512')
    return undefined
  }
  const secrets = readSecrets(spec, files, hmac, problem)
  return secrets && secretIssuer(settings, secrets)
}

/** `binding:` of an issuer or a route, its default filled in. */
export function compileBinding(spec: BindingDocument | undefined): BindingRule | undefined {
  return spec && { method: spec.method, required: spec.required ?? BINDING_DEFAULT.required }
}

/**
 * The issuer's shared secrets, the newest first: `secrets`, or the one of `secret`/`secret_file`.
 * Each is at least as long as the largest hash of the issuer's algorithms (RFC 7518 §3.2); kids
 * are unique. Undefined when one cannot be used (each problem said).
 */
function readSecrets(spec: IssuerDocument, files: PolicyFiles, hmac: readonly string[], problem: OnProblem): IssuerSecret[] | undefined {
  const needed = Math.max(...hmac.map((a) => Number(a.slice(2)) / 8))
  const read = (item: { secret?: string | undefined; secret_file?: string | undefined }, at: DocPath): Buffer | undefined => {
    const text = item.secret_file !== undefined ? readSecretBesidePolicy(files, item.secret_file, [...at, 'secret_file'], problem, 'secret_file') : item.secret!
    if (text === undefined) return undefined
    const secret = Buffer.from(text)
    // RFC 7518 §3.2: the key must be at least as long as the hash output.
    if (secret.length < needed) {
      problem(
        [...at, item.secret_file !== undefined ? 'secret_file' : 'secret'],
        `the secret must be at least ${needed} bytes for ${hmac.join(', ')} (RFC 7518 §3.2); it has ${secret.length}`,
      )
      return undefined
    }
    return secret
  }
  if (spec.secrets === undefined) {
    const secret = read(spec, [])
    return secret && [{ kid: undefined, secret }]
  }
  const out: IssuerSecret[] = []
  let ok = true
  const kids = new Set<string>()
  spec.secrets.forEach((item, i) => {
    const at: DocPath = ['secrets', i]
    if ((item.secret === undefined) === (item.secret_file === undefined)) {
      problem(at, 'a secret needs exactly one of secret or secret_file')
      ok = false
      return
    }
    if (item.kid !== undefined) {
      if (kids.has(item.kid)) {
        problem([...at, 'kid'], `kid "${item.kid}" is already the kid of another secret of this issuer`)
        ok = false
      }
      kids.add(item.kid)
    }
    const secret = read(item, at)
    if (secret) out.push({ kid: item.kid, secret })
    else ok = false
  })
  return ok ? out : undefined
}

/**
 * `discovery: true`: the issuer is where its metadata lives (OIDC Discovery §4), so it must be
 * one exact https URL (http on loopback) without query or fragment.
 */
function discoverySource(spec: IssuerDocument, isTemplate: boolean, at: DocPath, problem: OnProblem): { discover: string } | undefined {
  if (isTemplate) {
    problem(at, 'discovery needs one exact issuer; give a multi-tenant issuer its jwks_uri')
    return undefined
  }
  const why = unsafeUrl(spec.issuer)
  if (why) {
    problem(at, `discovery reads {issuer}/.well-known/openid-configuration, but the issuer ${why}`)
    return undefined
  }
  const url = new URL(spec.issuer)
  if (url.search || url.hash || spec.issuer.includes('?') || spec.issuer.includes('#')) {
    problem(at, 'discovery needs an issuer URL without a query or fragment (OIDC Discovery §4)')
    return undefined
  }
  return { discover: spec.issuer }
}

/** Checks an issuer's token_sources; false when one cannot be used (each said). */
function checkTokenSources(specs: readonly TokenSourceDocument[] | undefined, at: DocPath, problem: OnProblem): boolean {
  let ok = true
  const seen = new Set<string>()
  specs?.forEach((spec, i) => {
    const place = sourcePlace(spec, [...at, i], problem)
    if (!place) ok = false
    else if (seen.has(place.key)) {
      problem([...at, i], `the ${place.what} is already a token source`)
      ok = false
    }
    if (place) seen.add(place.key)
  })
  return ok
}

/** An exact iss of one issuer that a multi-tenant issuer also matches would make the choice a guess. */
function checkTemplateOverlaps(issuers: ReadonlyMap<string, Issuer>, problem: OnProblem): void {
  for (const multi of issuers.values()) {
    if (!multi.template) continue
    for (const other of issuers.values()) {
      other.exactIss.forEach((iss, i) => {
        if (tenantIn(multi.template!, iss) === undefined) return
        problem(
          ['issuers', other.name, i === 0 ? 'issuer' : 'issuer_aliases', ...(i === 0 ? [] : [i - 1])],
          `issuer "${iss}" is also matched by issuers.${multi.name} (${multi.issuer}); one iss value must map to one issuer`,
        )
      })
    }
  }
}
