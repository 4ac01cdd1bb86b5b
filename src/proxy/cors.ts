// CORS (the Fetch standard's CORS protocol, https://fetch.spec.whatwg.org/#http-cors-protocol).
// A browser asks before a cross-origin request with a token: an OPTIONS preflight that carries
// no credentials. On a route with `cors:` the gateway answers that preflight itself, without a
// token and without the upstream; every other response of the route (denials included, so a
// page can read its 401) gets the Access-Control-* headers. Origins are compared exactly.
import type { IncomingHttpHeaders } from 'node:http'
import { deny, type Denial } from '../http/denial.js'
import { durationMs } from '../policy/duration.js'
import type { DocPath, OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import { CorsSchema, type CorsDocument } from '../policy/schema.js'

export interface CorsRule {
  /** `origins: ["*"]`: any origin, answered with a literal `*` (never with credentials). */
  anyOrigin: boolean
  origins: ReadonlySet<string>
  methods: ReadonlySet<string>
  /** Lower-case. */
  headers: ReadonlySet<string>
  credentials: boolean
  /** Header lines added besides Access-Control-Allow-Origin, built once per rule. */
  actualHeaders: ReadonlyArray<readonly [string, string]>
  preflightHeaders: ReadonlyArray<readonly [string, string]>
}

/** What a preflight asks for: its Origin and Access-Control-Request-* headers. */
export interface Preflight {
  origin: string
  method: string
  /** Access-Control-Request-Headers as sent: comma separated, any case. */
  headers: string
}

const DEFAULT = defaultsOf(CorsSchema, ['methods', 'headers', 'credentials'])
// Upstream copies are removed where the gateway answers for CORS, so the two cannot disagree
// (an upstream's `Access-Control-Allow-Origin: *` would otherwise open a route the policy limits).
const CORS_RESPONSE_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-expose-headers',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-max-age',
]
const PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers'

export function compileCors(spec: CorsDocument, at: DocPath, problem: OnProblem): CorsRule | undefined {
  let ok = true
  const anyOrigin = spec.origins.includes('*')
  if (anyOrigin && spec.origins.length > 1) {
    problem([...at, 'origins'], '"*" allows every origin; it cannot be listed with others')
    ok = false
  }
  // With credentials the browser refuses a literal `*`; echoing any origin instead would hand
  // every site on the web the user's cookies: refused rather than guessed.
  if (anyOrigin && spec.credentials) {
    problem([...at, 'credentials'], 'credentials: true cannot be used with origins: ["*"]; list the origins')
    ok = false
  }
  spec.origins.forEach((origin, i) => {
    if (origin === '*') return
    const why = originProblem(origin)
    if (why) {
      problem([...at, 'origins', i], why)
      ok = false
    }
  })
  if (!ok) return undefined

  const methods = spec.methods ?? DEFAULT.methods
  const headers = (spec.headers ?? DEFAULT.headers).map((h) => h.toLowerCase())
  const credentials = spec.credentials ?? DEFAULT.credentials
  const actualHeaders: Array<[string, string]> = []
  if (credentials) actualHeaders.push(['access-control-allow-credentials', 'true'])
  if (spec.expose_headers?.length) actualHeaders.push(['access-control-expose-headers', spec.expose_headers.join(', ')])
  const preflightHeaders: Array<[string, string]> = [['access-control-allow-methods', methods.join(', ')]]
  if (headers.length) preflightHeaders.push(['access-control-allow-headers', headers.join(', ')])
  if (credentials) preflightHeaders.push(['access-control-allow-credentials', 'true'])
  if (spec.max_age !== undefined) preflightHeaders.push(['access-control-max-age', String(Math.floor(durationMs(spec.max_age) / 1000))])
  return {
    anyOrigin,
    origins: new Set(anyOrigin ? [] : spec.origins),
    methods: new Set(methods),
    headers: new Set(headers),
    credentials,
    actualHeaders,
    preflightHeaders,
  }
}

/** Browsers send an origin serialized as scheme://host[:port], so only that form can ever match. */
function originProblem(origin: string): string | undefined {
  if (origin === 'null') return 'the origin "null" (sandboxed documents, local files) cannot be allowed: any page can send it'
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return `${JSON.stringify(origin)} is not an origin such as https://app.example.com`
  }
  if (url.origin !== origin) {
    return url.origin === 'null'
      ? `${JSON.stringify(origin)} is not an http(s) origin`
      : `${JSON.stringify(origin)} is not an origin as browsers send it; write ${JSON.stringify(url.origin)}`
  }
  return undefined
}

/** The preflight a request is, or undefined: OPTIONS with Origin and Access-Control-Request-Method. */
export function preflightOf(method: string | undefined, headers: IncomingHttpHeaders): Preflight | undefined {
  if (method !== 'OPTIONS') return undefined
  const origin = headers.origin
  const requested = headers['access-control-request-method']
  if (typeof origin !== 'string' || typeof requested !== 'string') return undefined
  const requestHeaders = headers['access-control-request-headers']
  return { origin, method: requested, headers: typeof requestHeaders === 'string' ? requestHeaders : '' }
}

export function allowsOrigin(rule: CorsRule, origin: string): boolean {
  return rule.anyOrigin || rule.origins.has(origin)
}

/** Why the rule refuses the preflight (`403 cors_rejected`), or undefined when it allows it. */
export function refusePreflight(rule: CorsRule, preflight: Preflight): Denial | undefined {
  if (!allowsOrigin(rule, preflight.origin)) return deny('cors_rejected', 'the origin is not allowed by cors.origins')
  if (!rule.methods.has(preflight.method)) return deny('cors_rejected', `the method ${clip(preflight.method)} is not allowed by cors.methods`)
  for (const name of preflight.headers.split(',')) {
    const header = name.trim().toLowerCase()
    if (header !== '' && !rule.headers.has(header)) return deny('cors_rejected', `the header ${clip(header)} is not allowed by cors.headers`)
  }
  return undefined
}

function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text
}

/** Where the response headers go: fastify's reply, or a plain record (`jwtgate explain`). */
export interface HeaderSink {
  getHeader(name: string): unknown
  header(name: string, value: string): unknown
  removeHeader(name: string): unknown
}

/**
 * Adds the CORS headers of `rule` to a response. `origin` is the request's Origin header;
 * `preflight` says whether the gateway is answering a preflight (refused when `refused`).
 */
export function addCorsHeaders(sink: HeaderSink, rule: CorsRule, origin: unknown, preflight: boolean, refused: boolean): void {
  // The answer depends on these request headers: shared caches must keep one copy per value.
  addVary(sink, preflight ? PREFLIGHT_VARY : 'Origin')
  if (!preflight) for (const name of CORS_RESPONSE_HEADERS) sink.removeHeader(name)
  if (refused || typeof origin !== 'string' || !allowsOrigin(rule, origin)) return
  sink.header('access-control-allow-origin', rule.anyOrigin ? '*' : origin)
  for (const [name, value] of preflight ? rule.preflightHeaders : rule.actualHeaders) sink.header(name, value)
}

function addVary(sink: HeaderSink, value: string): void {
  const current = sink.getHeader('vary')
  const text = Array.isArray(current) ? current.join(', ') : current === undefined ? '' : String(current)
  if (text.trim() === '') sink.header('vary', value)
  else if (text.trim() !== '*' && !VARY_HAS_ORIGIN.test(text)) sink.header('vary', `${text}, ${value}`)
}

const VARY_HAS_ORIGIN = /(^|,)\s*origin\s*(,|$)/i

/** A HeaderSink over a plain record: for showing the headers without a response, or a response head being built. */
export function headerRecord<T extends Record<string, unknown> = Record<string, string>>(headers: T = {} as T): HeaderSink & { headers: T } {
  return {
    headers,
    getHeader: (name) => headers[name],
    header: (name, value) => {
      ;(headers as Record<string, unknown>)[name] = value
    },
    removeHeader: (name) => {
      delete headers[name]
    },
  }
}
