// `jwtgate test`: a policy's expected decisions, checked offline, in the spirit of `opa test`.
//
//   tokens:                                  # optional: named sets of claims
//     admin: { iss: https://idp.example.com/, aud: orders-api, sub: alice, roles: [admin] }
//   cases:
//     - request: GET /admin/users?page=2     # METHOD TARGET, as on the request line
//       host: api.example.com                # optional Host header; none by default
//       token: admin                         # optional: a name from tokens, or claims inline
//       expect: allow                        # allow, a status (400 401 403 404 503) or a reason code
//       route: orders-admin                  # optional: the name of the route that matches
//       upstream: orders                     # optional: the upstream the route sends it to
//       headers: { x-user-id: alice, x-user-roles: null }   # identity headers; null: must be absent
//       sender: [dpop]                       # optional: the request proves a bound token's key with a
//                                            # valid DPoP proof (dpop) and/or its certificate (mtls)
//     - request: OPTIONS /api/orders         # a CORS preflight (no token): allow means the
//       preflight: { origin: https://app.example.com, method: PUT, headers: [authorization] }
//       expect: allow                        # gateway answers it with 204, cors_rejected that it refuses
//
// Each case runs through `decide` (src/decide.ts), the proxy's own decision: path normalization,
// route matching, issuer, audience, iat, the route's requirement (claims, scopes, max_age, …) and
// the identity headers. The claims are taken as verified (credentials `{ claims }`): no keys are
// fetched and no socket is opened, so signatures, exp, nbf and the header's typ are not part of
// it; `jwtgate explain --token` checks a real token. On a `mode: report` route a case checks the
// decision the route makes (which the proxy logs and counts), not that it forwards anyway.
//
// Inline claims (`token: { sub: bob }`) mean "a token this route accepts, with these claims":
// a missing iss is filled with the first issuer the matched route lists and a missing aud with
// the audience the route's requirement wants from that issuer (its own `audiences`, or the
// issuer's first), so a case states only the claims it is about (as with
// `explain --claims`). An explicit iss or aud always wins, and `null` leaves the claim out.
// Named tokens are used exactly as written: they stand for one real token, whatever route it is
// sent to, so a wrong iss or aud in one shows up as the 401 the proxy would give.
//
// ${VAR} and ${VAR:-fallback} are replaced from the environment in every value, as in the policy
// (docs/policy.md, "Environment variables and secret files"): a case can name the issuer the
// policy takes from a variable.
import { readFileSync } from 'node:fs'
import { Ajv } from 'ajv'
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml'
import type { Credentials } from '../auth/authenticate.js'
import type { DenyReason } from '../http/denial.js'
import { decide, type Decision } from '../decide.js'
import type { Preflight } from '../proxy/cors.js'
import { createLogger } from '../log.js'
import { loadPolicy, type CompiledPolicy } from '../policy/compile.js'
import { interpolate, label, readableErrors, type Env } from '../policy/load.js'
import { formatProblem, type DocPath, type PolicyProblem } from '../policy/problems.js'
import { stopIssuers } from '../lifecycle/live_policy.js'
import { checkText, identityHeadersOf, routeFor, withRouteDefaults } from '../report.js'

const REASONS = [
  'bad_path',
  'bad_host',
  'no_route',
  'multiple_tokens',
  'missing_token',
  'malformed',
  'token_too_large',
  'wrong_issuer',
  'bad_algorithm',
  'unknown_kid',
  'keys_unavailable',
  'bad_signature',
  'expired',
  'not_yet_valid',
  'issued_in_future',
  'wrong_audience',
  'invalid_claims',
  'insufficient_claims',
  'revoked',
  'replayed',
  'revocation_unavailable',
  'wrong_type',
  'identity_too_large',
  'cors_rejected',
  'https_required',
  'body_too_large',
  'invalid_dpop_proof',
  'use_dpop_nonce',
  'proof_replayed',
  'proof_replay_unavailable',
  'binding_mismatch',
  'unbound_token',
  'headers_too_large',
] as const satisfies readonly DenyReason[]
// Fails to compile when src/http/denial.ts gains a reason this list lacks.
const everyReason: Record<Exclude<DenyReason, (typeof REASONS)[number]>, never> = {}
void everyReason
const STATUSES = [400, 401, 403, 404, 503]

type Expectation = { allow: true } | { status: number } | { reason: DenyReason }

export interface TestCase {
  /** `file:line:col` of the case, for FAIL lines. */
  at: string
  method: string
  target: string
  host?: string
  token?: { name: string; claims: Record<string, unknown>; inline: boolean }
  expect: Expectation
  /** The name of the route that should match. */
  route?: string
  upstream?: string
  /** Lower-case names; null: the header must be absent. */
  headers?: Record<string, string | null>
  /** A CORS preflight: its Origin and Access-Control-Request-* headers. */
  preflight?: Preflight
  /** What the request proves of a bound token (see VerifiedClaims in src/auth/authenticate.ts). */
  sender?: ReadonlyArray<'dpop' | 'mtls'>
}

/** One case's outcome: what failed (empty when it passed) and what the gateway decided. */
export interface CaseResult {
  case: TestCase
  failures: string[]
  /** The decision as text, as in "403 insufficient_claims" or "allow → orders". */
  outcome: string
}

/** Every problem in the test files (no case was run), or every case's result. */
export type PolicyTestRun = { problems: PolicyProblem[] } | { results: CaseResult[] }

/** Runs the test files against the policy, offline. Throws PolicyError when the policy does not load. */
export async function runPolicyTests(policyFile: string, testFiles: string[], env: Env = process.env): Promise<PolicyTestRun> {
  const policy = loadPolicy(policyFile, createLogger('silent'), env)
  try {
    const read = testFiles.map((file) => readTestFile(file, policy, env))
    const problems = read.flatMap((r) => ('problems' in r ? r.problems : []))
    if (problems.length) return { problems }
    return {
      results: await runCases(
        policy,
        read.flatMap((r) => ('cases' in r ? r.cases : [])),
      ),
    }
  } finally {
    stopIssuers(policy)
  }
}

/** What `jwtgate test` prints: one line per case and a summary on stdout, or the test files' problems on stderr. */
export function testRunReport(run: PolicyTestRun): { stdout: string; stderr: string; code: 0 | 1 } {
  if ('problems' in run) {
    const { problems } = run
    const lines = [...problems.map(formatProblem), `${problems.length} problem${problems.length === 1 ? '' : 's'} in the test file; no case was run`]
    return { stdout: '', stderr: lines.map((l) => `${l}\n`).join(''), code: 1 }
  }
  const { results } = run
  const width = Math.min(60, Math.max(...results.map((r) => describeCase(r.case).length)))
  const failed = results.filter((r) => r.failures.length).length
  const lines = results.map((r) => {
    const status = r.failures.length ? 'FAIL' : 'ok  '
    const detail = r.failures.length ? `${r.failures.join('; ')}  at ${r.case.at}` : r.outcome
    return `${status} ${describeCase(r.case).padEnd(width)}  ${detail}`
  })
  lines.push(`${results.length - failed} passed, ${failed} failed`)
  return { stdout: lines.map((l) => `${l}\n`).join(''), stderr: '', code: failed ? 1 : 0 }
}

// ---- running --------------------------------------------------------------------------------

async function runCases(policy: CompiledPolicy, cases: TestCase[]): Promise<CaseResult[]> {
  const results: CaseResult[] = []
  for (const c of cases) {
    const decision = await evaluate(policy, c)
    results.push({ case: c, failures: check(c, decision), outcome: outcomeText(decision) })
  }
  return results
}

function describeCase(c: TestCase): string {
  return `${c.method} ${c.target}${c.host ? ` (host ${c.host})` : ''}${c.token ? ` [${c.token.name}]` : ''}${c.preflight ? ` [preflight ${c.preflight.method} from ${c.preflight.origin}]` : ''}`
}

async function evaluate(policy: CompiledPolicy, c: TestCase): Promise<Decision> {
  const decision: Decision = {}
  await decide(policy, c.method, c.host, c.target, await credentialsFor(policy, c), decision, c.preflight)
  return decision
}

async function credentialsFor(policy: CompiledPolicy, c: TestCase): Promise<Credentials> {
  if (!c.token) return { rawHeaders: [] }
  const sender = c.sender ? { sender: c.sender } : {}
  if (!c.token.inline) return { claims: c.token.claims, ...sender }
  return { claims: withRouteDefaults(c.token.claims, await routeFor(policy, c.method, c.host, c.target)), ...sender }
}

/** What is wrong with the decision, one phrase per unmet expectation; empty when it passes. */
function check(c: TestCase, d: Decision): string[] {
  const out: string[] = []
  if (!meets(c.expect, d)) out.push(`expected ${expectationText(c.expect)}, got ${outcomeText(d, true)}`)
  if (c.route !== undefined && d.route?.name !== c.route) out.push(`expected route ${c.route}, got ${d.route ? d.route.name : 'no route'}`)
  if (c.upstream !== undefined && d.route?.upstream.name !== c.upstream) {
    out.push(`expected upstream ${c.upstream}, got ${d.route ? d.route.upstream.name : 'no route'}`)
  }
  const got = identityHeadersOf(d)
  for (const [name, want] of Object.entries(c.headers ?? {})) {
    const have = got[name]
    if (want === null && have !== undefined) out.push(`expected no ${name}, got ${name}: ${have}`)
    if (want !== null && have !== want) out.push(`expected ${name}: ${want}, got ${have === undefined ? `no ${name}` : `${name}: ${have}`}`)
  }
  return out
}

// On a `mode: report` route the case checks the route's decision, the one enforcing would give:
// the file stays right when the route is switched to enforce.
function meets(expect: Expectation, d: Decision): boolean {
  const denial = d.denial ?? d.reported
  if ('allow' in expect) return !denial
  if ('status' in expect) return denial?.status === expect.status
  return denial?.reason === expect.reason
}

function expectationText(expect: Expectation): string {
  if ('allow' in expect) return 'allow'
  return 'status' in expect ? String(expect.status) : expect.reason
}

/** With `why`: what refused the token, the value found and the one wanted (for a case that did not expect it). */
function outcomeText(d: Decision, why = false): string {
  const check = why ? (d.denial ?? d.reported)?.check : undefined
  const text = check ? `${decisionText(d)} (${checkText(check)})` : decisionText(d)
  return d.route ? `${text}  (route ${d.route.name})` : text
}

function decisionText(d: Decision): string {
  if (d.reported) return `${d.reported.status} ${d.reported.reason} (mode report: forwarded to ${d.route!.upstream.name} anyway)`
  if (d.denial) return `${d.denial.status} ${d.denial.reason}`
  return d.preflight ? 'allow → preflight answered by the gateway (204)' : `allow → ${d.route!.upstream.name}`
}

// ---- reading the test file --------------------------------------------------------------------

const SCALAR = {
  anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }],
  description: 'a string, or null for a header that must be absent',
}

const CASE_SCHEMA = {
  type: 'object',
  properties: {
    request: { type: 'string', pattern: '^[A-Za-z]+ [^ ]+$', description: 'a method and a request path, as in "GET /api/orders"' },
    host: { type: 'string', minLength: 1 },
    token: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'object' }], description: 'a name from tokens, or an object of claims' },
    expect: { anyOf: [{ type: 'string' }, { type: 'integer' }], description: 'allow, a status (400, 401, 403, 404, 503) or a reason code' },
    route: { type: 'string', minLength: 1, description: 'the name of the route that matches (its name:, or the one derived from methods, host and path)' },
    upstream: { type: 'string', minLength: 1 },
    headers: { type: 'object', additionalProperties: SCALAR },
    sender: {
      type: 'array',
      items: { enum: ['dpop', 'mtls'] },
      uniqueItems: true,
      description:
        'what the request proves of a bound token: a valid DPoP proof for its cnf.jkt (dpop), the certificate of its cnf.x5t#S256 (mtls); none: a bearer request',
    },
    preflight: {
      type: 'object',
      properties: {
        origin: { type: 'string', minLength: 1 },
        method: { type: 'string', pattern: '^[A-Z]+$' },
        headers: { type: 'array', items: { type: 'string', minLength: 1 } },
      },
      required: ['origin', 'method'],
      additionalProperties: false,
      description: 'a CORS preflight: the Origin and the method and headers it asks for',
    },
  },
  required: ['request', 'expect'],
  additionalProperties: false,
}

const TEST_FILE_SCHEMA = {
  type: 'object',
  properties: {
    tokens: { type: 'object', additionalProperties: { type: 'object' } },
    cases: { type: 'array', minItems: 1, items: CASE_SCHEMA },
  },
  required: ['cases'],
  additionalProperties: false,
}

const validateTestFile = new Ajv({ allErrors: true, strict: true, verbose: true }).compile(TEST_FILE_SCHEMA)

interface TestFileDocument {
  tokens?: Record<string, Record<string, unknown>>
  cases: Array<{
    request: string
    host?: string
    token?: string | Record<string, unknown>
    expect: string | number
    route?: string
    upstream?: string
    headers?: Record<string, unknown>
    sender?: Array<'dpop' | 'mtls'>
    preflight?: { origin: string; method: string; headers?: string[] }
  }>
}

/** The cases of one test file, or every problem in it as file:line:col. ${VAR} is substituted as in the policy. */
export function readTestFile(file: string, policy: CompiledPolicy, env: Env = process.env): { cases: TestCase[] } | { problems: PolicyProblem[] } {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    return { problems: [{ file, line: 1, col: 1, message: `cannot read test file: ${(err as Error).message}` }] }
  }
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false })
  const problems: PolicyProblem[] = []
  const add = (path: DocPath, message: string, at: 'key' | 'value' = 'value') => problems.push({ file, ...lines.linePos(locate(doc, path, at)), message })

  const syntax = doc.errors[0] ?? doc.warnings[0]
  if (syntax) {
    problems.push({ file, ...lines.linePos(syntax.pos[0]), message: syntax.message.split('\n')[0]! })
    return { problems }
  }
  // A case stands for what the gateway sees: `iss: "${IDP_ISSUER}"` is the issuer the policy got from the same variable.
  interpolate(doc, env, { add })
  if (problems.length) return { problems }
  const value = doc.toJS() as unknown
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    add([], 'a test file is a map with cases (a list) and optional tokens')
    return { problems }
  }
  if (!validateTestFile(value)) {
    for (const e of readableErrors(validateTestFile.errors ?? [])) add(e.path, e.message, e.at)
    return { problems }
  }
  const document = value as unknown as TestFileDocument
  const cases = document.cases.map((spec, i) => caseOf(spec, ['cases', i], document, policy, add))
  if (problems.length) return { problems }
  return { cases: cases.map((c, i) => ({ ...c!, at: position(file, lines, locate(doc, ['cases', i], 'value')) })) }
}

type Add = (path: DocPath, message: string) => void

function caseOf(
  spec: TestFileDocument['cases'][number],
  at: DocPath,
  document: TestFileDocument,
  policy: CompiledPolicy,
  add: Add,
): Omit<TestCase, 'at'> | undefined {
  const [method, target] = spec.request.split(' ') as [string, string]
  const token = tokenOf(spec.token, [...at, 'token'], document.tokens ?? {}, add)
  const expect = expectationOf(spec.expect, [...at, 'expect'], add)
  if (spec.upstream !== undefined && !policy.upstreams.has(spec.upstream)) {
    add([...at, 'upstream'], `unknown upstream "${spec.upstream}" (known: ${[...policy.upstreams.keys()].join(', ')})`)
  }
  if (spec.route !== undefined && !policy.routes.values().some((r) => r.name === spec.route)) {
    add(
      [...at, 'route'],
      `unknown route "${spec.route}" (known: ${policy.routes
        .values()
        .map((r) => r.name)
        .join(', ')})`,
    )
  }
  if (spec.preflight && method.toUpperCase() !== 'OPTIONS') add([...at, 'request'], 'a case with preflight is an OPTIONS request')
  if (token === null || !expect) return undefined
  const headers = spec.headers && Object.fromEntries(Object.entries(spec.headers).map(([k, v]) => [k.toLowerCase(), v === null ? null : String(v)]))
  const preflight = spec.preflight && { origin: spec.preflight.origin, method: spec.preflight.method, headers: (spec.preflight.headers ?? []).join(',') }
  return {
    method: method.toUpperCase(),
    target,
    host: spec.host,
    token,
    expect,
    route: spec.route,
    upstream: spec.upstream,
    headers,
    ...(preflight ? { preflight } : {}),
    ...(spec.sender ? { sender: spec.sender } : {}),
  }
}

/** undefined: no token; null: a problem was reported. */
function tokenOf(
  spec: TestFileDocument['cases'][number]['token'],
  at: DocPath,
  tokens: Record<string, Record<string, unknown>>,
  add: Add,
): TestCase['token'] | null {
  if (spec === undefined) return undefined
  if (typeof spec === 'object') return { name: flow(spec), claims: spec, inline: true }
  const claims = Object.hasOwn(tokens, spec) ? tokens[spec] : undefined
  if (claims) return { name: spec, claims, inline: false }
  const names = Object.keys(tokens)
  add(at, `unknown token "${spec}" ${names.length ? `(known: ${names.join(', ')})` : '(the file has no tokens section)'}`)
  return null
}

/** Inline claims as a short YAML-like label for the case line: `{sub: bob, roles: [admin]}`. */
function flow(claims: Record<string, unknown>): string {
  const text = `{${Object.entries(claims)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? `[${v.join(', ')}]` : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(', ')}}`
  return text.length > 40 ? `${text.slice(0, 39)}…` : text
}

function expectationOf(spec: string | number, at: DocPath, add: Add): Expectation | undefined {
  if (spec === 'allow') return { allow: true }
  if (typeof spec === 'number' && STATUSES.includes(spec)) return { status: spec }
  if (typeof spec === 'string' && (REASONS as readonly string[]).includes(spec)) return { reason: spec as DenyReason }
  if (typeof spec === 'number' || /^[0-9]+$/.test(spec)) {
    const hint = Number(spec) === 200 ? '; write allow for a request the gateway lets through' : ''
    add(at, `${label(at)} must be allow or a status the gateway answers with (${STATUSES.join(', ')}), not ${JSON.stringify(spec)}${hint}`)
  } else {
    add(at, `${label(at)} "${spec}" is neither allow nor a reason code (${REASONS.join(', ')})`)
  }
  return undefined
}

function position(file: string, lines: LineCounter, offset: number): string {
  const { line, col } = lines.linePos(offset)
  return `${file}:${line}:${col}`
}

/** The source offset of the node at `path` (or of its key), falling back to the nearest ancestor found. */
function locate(doc: Document, path: DocPath, at: 'key' | 'value'): number {
  let node = doc.contents as unknown
  let offset = (node as Node | null)?.range?.[0] ?? 0
  for (const [i, segment] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment))
      if (!pair) return offset
      const key = pair.key as Node
      if (i === path.length - 1 && at === 'key') return key.range?.[0] ?? offset
      node = pair.value
      offset = (pair.value as Node | null)?.range?.[0] ?? key.range?.[0] ?? offset
    } else if (isSeq(node) && node.items[Number(segment)]) {
      node = node.items[Number(segment)]
      offset = (node as Node).range?.[0] ?? offset
    } else {
      return offset
    }
  }
  return offset
}
