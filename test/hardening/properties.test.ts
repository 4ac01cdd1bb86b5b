// Property-based tests (fast-check) for the parts of the request path that take attacker input
// — the path normalizer, the route matcher, the token extractor, decide() — and for the policy
// loader, which takes operator input. Each property runs a bounded number of cases from a fixed
// seed, so a run is reproducible; FC_SEED=<n> explores other cases, and a failure prints the seed
// and the shrunk counterexample.
import t from 'tap'
import fc from 'fast-check'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { extractToken } from '../../src/auth/extract.js'
import { IssuerSet } from '../../src/auth/issuer_set.js'
import { sourcePlace, tokenSources, type SourcePlace } from '../../src/auth/token_sources.js'
import { isDenial } from '../../src/http/denial.js'
import { decide, type Decision } from '../../src/decide.js'
import { createLogger } from '../../src/log.js'
import { compilePolicy, type CompiledPolicy } from '../../src/policy/compile.js'
import { parsePolicySource } from '../../src/policy/load.js'
import { PolicyError } from '../../src/policy/problems.js'
import { normalizePath } from '../../src/routing/normalize.js'
import {
  compileHostPattern,
  compilePathPattern,
  hostFromHeader,
  RouteTable,
  type HostPattern,
  type PathPattern,
  type RouteCandidate,
} from '../../src/routing/route_table.js'
import { gateway, issuer, upstream } from '../support/harness.js'
import { writeFileSync } from 'node:fs'

/** A pattern the test writes as valid; an invalid one throws its problem, failing the test. */
function pathPattern(source: string): PathPattern {
  return compilePathPattern(source, [], (_at, message) => {
    throw new Error(message)
  })!
}

/** A pattern the test writes as valid; an invalid one throws its problem, failing the test. */
function hostPattern(source: string): HostPattern {
  return compileHostPattern(source, [], (_at, message) => {
    throw new Error(message)
  })!
}

type TT = Parameters<Parameters<typeof t.test>[0]>[0]

const SEED = Number(process.env.FC_SEED ?? 20_251_130)
// FC_RUNS_SCALE=10 runs ten times as many cases of every property, for a deeper local search.
const SCALE = Number(process.env.FC_RUNS_SCALE ?? 1)

/** Runs a property from its own fixed seed; a failure reports fast-check's message (seed, counterexample, path). */
function holds<Ts extends [unknown, ...unknown[]]>(t: TT, name: string, property: fc.IProperty<Ts>, numRuns: number, offset: number): void {
  const details = fc.check(property, { numRuns: Math.ceil(numRuns * SCALE), seed: SEED + offset })
  t.notOk(details.failed, details.failed ? `${name}\n${fc.defaultReportMessage(details) ?? ''}` : name)
}

async function holdsAsync<Ts extends [unknown, ...unknown[]]>(
  t: TT,
  name: string,
  property: fc.IAsyncProperty<Ts>,
  numRuns: number,
  offset: number,
): Promise<void> {
  const details = await fc.check(property, { numRuns: Math.ceil(numRuns * SCALE), seed: SEED + offset })
  t.notOk(details.failed, details.failed ? `${name}\n${fc.defaultReportMessage(details) ?? ''}` : name)
}

/** Assertion inside a property: throwing makes fast-check shrink and report the case. */
function expect(condition: boolean, message: string): void {
  if (!condition) throw new Error(message)
}

// ---------------------------------------------------------------------------------------------
// Paths

const PATH_PIECES = [
  '/',
  '/',
  '/',
  '/',
  '.',
  '..',
  '%2e',
  '%2E',
  '%2e%2e',
  '.%2E',
  '%2E.',
  '%2f',
  '%2F',
  '%5c',
  '%5C',
  '\\',
  '%00',
  '\u0000',
  ';',
  '%3b',
  '%3B',
  '%',
  '%2',
  '%zz',
  '%25',
  '%252e',
  '%252f',
  '%41',
  '%61',
  '%7e',
  '%7E',
  '%2d',
  '%5f',
  '~',
  'a',
  'b',
  'public',
  'admin',
  'api',
  'x',
  '*',
  '**',
  '%2A',
  ' ',
  '"',
  '<',
  '>',
  '{',
  '}',
  '|',
  '^',
  '`',
  '[',
  ']',
  '#',
  '?',
  '!',
  '$',
  '&',
  "'",
  '(',
  ')',
  '+',
  ',',
  '=',
  ':',
  '@',
  '\t',
  '\r',
  '\n',
  '\u007f',
  '\u001f',
  'é',
  '\u00ff',
  '\u0080',
  '%c3%a9',
  '%C3%A9',
  '%C0%AE',
  '%c0%af',
  '%C1%9C',
  '%E0%80%AE',
  '%ED%A0%80',
  '%EF%BF%BD',
  '%F0%9F%98%80',
  '%F4%90%80%80',
  '%FF',
  '%80',
  '%C3',
  '\ud83d\ude00',
  '\ud800',
  '%u002e',
  '%%32%65',
]
const pathLike = fc.array(fc.constantFrom(...PATH_PIECES), { maxLength: 24 }).map((pieces) => '/' + pieces.join(''))
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 48 }),
  fc.string({ unit: 'binary-ascii', maxLength: 48 }),
  fc.string({ unit: 'grapheme', maxLength: 24 }),
)
const rawPath = fc.oneof({ weight: 6, arbitrary: pathLike }, { weight: 1, arbitrary: anyString }, { weight: 1, arbitrary: anyString.map((s) => '/' + s) })

// What a normalized path may contain: unreserved characters, the sub-delims kept raw, `:`, `@`,
// `/`, and escapes with upper-case hex; `;` only when path parameters are allowed.
const NORMAL_STRICT = /^(?:[A-Za-z0-9\-._~!$&'()*+,=:@/]|%[0-9A-F]{2})*$/
const NORMAL_LAX = /^(?:[A-Za-z0-9\-._~!$&'()*+,=:@/;]|%[0-9A-F]{2})*$/
// An escape of an unreserved character is never left in: it is decoded.
const ESCAPED_UNRESERVED = /%(?:3[0-9]|4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|2D|2E|5F|7E)/

function checkNormalized(path: string, rejectParams: boolean): void {
  expect(path.startsWith('/'), `starts with /: ${path}`)
  expect(!path.includes('//'), `no //: ${path}`)
  const segments = path.slice(1).split('/')
  expect(
    segments.every((s) => s !== '.' && s !== '..'),
    `no dot segments: ${path}`,
  )
  expect(
    segments.slice(0, -1).every((s) => s !== ''),
    `no empty segment but the last: ${path}`,
  )
  expect(!/%2F|%5C/i.test(path), `no encoded / or \\: ${path}`)
  expect((rejectParams ? NORMAL_STRICT : NORMAL_LAX).test(path), `only allowed characters: ${JSON.stringify(path)}`)
  expect(!ESCAPED_UNRESERVED.test(path), `no escaped unreserved character: ${path}`)
  if (rejectParams) expect(!path.includes(';') && !path.includes('%3B'), `no ; when path parameters are refused: ${path}`)
  // A back end that percent-decodes each segment once sees no separator, dot segment, NUL or control.
  for (const segment of segments) {
    let decoded: string
    try {
      decoded = decodeURIComponent(segment)
    } catch {
      throw new Error(`segment ${segment} of ${path} is not valid percent-encoded UTF-8`)
    }
    expect(decoded !== '.' && decoded !== '..', `decoded once, ${segment} is no dot segment`)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this checks for
    expect(!/[/\\\u0000-\u001f\u007f]/.test(decoded), `decoded once, ${segment} has no separator or control`)
  }
  // A WHATWG URL parser (undici, Node, browsers) reads the forwarded path unchanged.
  expect(new URL(`http://upstream.test${path}`).pathname === path, `WHATWG URL keeps ${path}`)
}

t.test('normalizePath', async (t) => {
  holds(
    t,
    'never throws; a result is normal, idempotent and safe for a back end',
    fc.property(rawPath, fc.boolean(), (raw, rejectParams) => {
      const options = { rejectPathParameters: rejectParams }
      const result = normalizePath(raw, options)
      if (!result.ok) {
        expect(typeof result.reason === 'string' && result.reason.length > 0, 'a refusal says why')
        return
      }
      checkNormalized(result.path, rejectParams)
      const again = normalizePath(result.path, options)
      expect(again.ok && again.path === result.path, `idempotent: ${JSON.stringify(raw)} -> ${result.path} -> ${JSON.stringify(again)}`)
      // What passes the strict option passes the lax one unchanged.
      if (rejectParams) {
        const lax = normalizePath(raw, { rejectPathParameters: false })
        expect(lax.ok && lax.path === result.path, `strict ⊂ lax for ${JSON.stringify(raw)}`)
      }
    }),
    5000,
    1,
  )

  holds(
    t,
    'Node-shaped input (latin1 bytes) never throws either',
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (bytes, rejectParams) => {
      const raw = '/' + Buffer.from(bytes).toString('latin1')
      const result = normalizePath(raw, { rejectPathParameters: rejectParams })
      if (result.ok) checkNormalized(result.path, rejectParams)
    }),
    3000,
    2,
  )

  holds(
    t,
    'a /public/** route before /admin/** only ever matches paths under /public',
    fc.property(
      fc.oneof(
        pathLike.map((p) => '/public' + p),
        pathLike.map((p) => '/public/' + p),
        pathLike,
      ),
      (raw) => {
        const table = new RouteTable<string>([
          { path: pathPattern('/public/**'), methods: null, host: null, value: 'public' },
          { path: pathPattern('/admin/**'), methods: null, host: null, value: 'admin' },
        ])
        const result = normalizePath(raw, { rejectPathParameters: true })
        if (!result.ok) return
        const match = table.match('GET', '', result.path)
        const upstreamPath = new URL(`http://upstream.test${result.path}`).pathname
        const firstDecoded = decodeURIComponent(result.path.split('/')[1] ?? '')
        if (match?.value === 'public') {
          expect(result.path === '/public' || result.path.startsWith('/public/'), `public route for ${result.path}`)
          expect(!result.path.startsWith('/admin'), `never /admin: ${result.path}`)
          expect(upstreamPath === '/public' || upstreamPath.startsWith('/public/'), `the upstream sees /public too: ${upstreamPath}`)
          expect(firstDecoded === 'public', `decoded once, the first segment is still public: ${firstDecoded}`)
        } else if (match?.value === 'admin') {
          expect(result.path === '/admin' || result.path.startsWith('/admin/'), `admin route for ${result.path}`)
        } else {
          expect(!/^\/(public|admin)(\/|$)/.test(result.path), `no route although ${result.path} is under /public or /admin`)
        }
      },
    ),
    5000,
    3,
  )
})

// ---------------------------------------------------------------------------------------------
// Route table

const PATTERN_SEGMENTS = ['a', 'b', 'api', 'x;y', '*', '**']
const PATH_SEGMENTS = ['a', 'b', 'api', 'c', 'x;y', 'apix']

/** The reference matcher: the segment model of path_pattern.ts, by plain recursion. */
function referenceMatches(pattern: string, path: string): boolean {
  const p = pattern.slice(1).split('/')
  const s = path.slice(1).split('/')
  const memo = new Map<string, boolean>()
  const go = (i: number, j: number): boolean => {
    const key = `${i},${j}`
    const known = memo.get(key)
    if (known !== undefined) return known
    let out: boolean
    if (i === p.length) out = j === s.length
    else if (p[i] === '**') out = go(i + 1, j) || (j < s.length && go(i, j + 1))
    else if (j === s.length) out = false
    else if (p[i] === '*') out = s[j] !== '' && go(i + 1, j + 1)
    else out = p[i] === s[j] && go(i + 1, j + 1)
    memo.set(key, out)
    return out
  }
  return go(0, 0)
}

const patternSource = fc
  .tuple(fc.array(fc.constantFrom(...PATTERN_SEGMENTS), { maxLength: 5 }), fc.boolean())
  .map(([segments, trailing]) => '/' + segments.join('/') + (trailing && segments.length > 0 ? '/' : ''))
const normalizedPath = fc
  .tuple(fc.array(fc.constantFrom(...PATH_SEGMENTS), { maxLength: 6 }), fc.boolean())
  .map(([segments, trailing]) => '/' + segments.join('/') + (trailing && segments.length > 0 ? '/' : ''))

function tryPattern(source: string): PathPattern | null {
  try {
    return pathPattern(source)
  } catch {
    return null
  }
}

const candidate = fc.record({
  path: patternSource,
  methods: fc.option(fc.subarray(['GET', 'POST', 'DELETE'], { minLength: 1 }), { nil: null }),
  host: fc.option(fc.constantFrom('a.com', '*.a.com', 'b.com', '[::1]', '10.0.0.1'), { nil: null }),
})

t.test('RouteTable', async (t) => {
  holds(
    t,
    'pathPattern(...).matches agrees with a reference segment matcher',
    fc.property(patternSource, normalizedPath, (source, path) => {
      const pattern = tryPattern(source)
      if (!pattern) return
      expect(pattern.matches(path) === referenceMatches(source, path), `${source} vs ${path}: ${pattern.matches(path)}`)
    }),
    5000,
    10,
  )

  holds(
    t,
    'match() is the first candidate a linear scan finds',
    fc.property(
      fc.array(candidate, { maxLength: 8 }),
      fc.constantFrom('GET', 'POST', 'DELETE', 'PUT'),
      fc.constantFrom(undefined, '', 'a.com', 'A.COM.', 'x.a.com', 'x.y.a.com:8080', 'b.com:443', '[::1]:80', '10.0.0.1', 'evil.com', 'a.com:x', 'a.com@evil'),
      fc.oneof(
        normalizedPath,
        pathLike.map((p) => {
          const r = normalizePath(p, { rejectPathParameters: false })
          return r.ok ? r.path : '/'
        }),
      ),
      (specs, method, hostHeader, path) => {
        const candidates: RouteCandidate<number>[] = []
        for (const spec of specs) {
          const pattern = tryPattern(spec.path)
          if (!pattern) continue
          candidates.push({
            path: pattern,
            methods: spec.methods ? new Set(spec.methods) : null,
            host: spec.host ? hostPattern(spec.host) : null,
            value: candidates.length,
          })
        }
        const table = new RouteTable(candidates)
        const host = hostFromHeader(hostHeader)
        const scan = candidates.findIndex(
          (c) => c.path.matches(path) && (c.methods === null || c.methods.has(method)) && (c.host === null || c.host.matches(host)),
        )
        const match = table.match(method, host, path)
        expect((match?.index ?? -1) === scan, `${method} ${hostHeader} ${path}: table ${match?.index} vs scan ${scan} over ${JSON.stringify(specs)}`)
        if (match) expect(match.value === scan, "the value is the matched route's")
      },
    ),
    3000,
    11,
  )
})

// ---------------------------------------------------------------------------------------------
// Token extraction

const HEADER_NAMES = [
  'Authorization',
  'authorization',
  'AUTHORIZATION',
  'AuThOrIzAtIoN',
  'Authorisation',
  'authorization ',
  'x-authorization',
  'Proxy-Authorization',
  'Cookie',
  'Host',
  'X_Authorization',
]
const HEADER_VALUES = [
  'Bearer abc.def.ghi',
  'bearer x',
  'BEARER  y ',
  'Bearer',
  'Bearer ',
  'Bearer  ',
  'Basic YTpi',
  'Bearerx',
  'Bearer\tx',
  '',
  ' Bearer x',
  'Bearer a b',
  'Bearer ' + 'x'.repeat(300),
]
const rawHeaders = fc
  .array(
    fc.tuple(
      fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...HEADER_NAMES) }, { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 16 }) }),
      fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...HEADER_VALUES) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) }),
    ),
    { maxLength: 12 },
  )
  .map((pairs) => pairs.flat())

const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase())

// The default token source: `Authorization: Bearer`.
const bearerOnly = tokenSources([{ ...(sourcePlace({ header: 'Authorization' }, [], () => {}) as SourcePlace), issuers: new IssuerSet([]) }])

t.test('extractToken from Authorization: Bearer', async (t) => {
  holds(
    t,
    'never throws; two Authorization headers never give a token; one without a token is never missing_token; a token is what follows Bearer',
    fc.property(rawHeaders, fc.integer({ min: 1, max: 400 }), fc.boolean(), (raw, maxBytes, truncate) => {
      // Node's rawHeaders always has pairs; an odd-length list must not break it either.
      const list = truncate && raw.length > 0 ? raw.slice(0, -1) : raw
      const found = extractToken(list, undefined, bearerOnly, maxBytes)
      const result = isDenial(found) ? found : found.token
      const values: string[] = []
      for (let i = 0; i < list.length; i += 2) if (asciiLower(list[i]!) === 'authorization') values.push(list[i + 1]!)
      if (values.length >= 2) {
        expect(isDenial(result) && result.reason === 'multiple_tokens' && result.status === 400, `two Authorization headers: ${JSON.stringify(result)}`)
        return
      }
      if (typeof result !== 'string') {
        expect(isDenial(result), 'a denial otherwise')
        if (values.length === 0 || values[0] === undefined) expect(result.reason === 'missing_token', `no header: ${result.reason}`)
        // An Authorization header that gives no token is a malformed credential, never "no token".
        else expect(result.reason !== 'missing_token' && result.status === 401, `one header ${JSON.stringify(values[0])}: ${result.reason}`)
        return
      }
      expect(values.length === 1, 'a token comes from exactly one Authorization header')
      const value = values[0]!
      expect(/^bearer /i.test(value), `the scheme is Bearer: ${value}`)
      expect(result === value.slice(7).trim(), 'the token is the rest, trimmed')
      expect(result.length > 0 && result.length <= maxBytes, `non-empty and at most ${maxBytes}: ${result.length}`)
    }),
    5000,
    20,
  )
})

// ---------------------------------------------------------------------------------------------
// Policy loader

const silent = createLogger('silent')
const SECRET = 'a-shared-secret-of-at-least-thirty-two-bytes!'
const GOOD = `version: 1
listen: { host: 127.0.0.1, port: 8080 }
admin: false
issuers:
  idp:
    issuer: https://idp.example.com/
    jwks_uri: https://idp.example.com/.well-known/jwks.json
    audiences: [orders-api]
    algorithms: [RS256, ES256]
    clock_skew: 30s
    jwks: { timeout: 5s, cooldown: 30s, max_age: 10m }
  internal:
    issuer: internal-auth
    secret: \${INTERNAL_SECRET}
    audiences: [orders-api, internal-api]
    algorithms: [HS256]
upstreams:
  orders: { url: "http://127.0.0.1:3001", timeout: 15s }
identity_headers:
  x-user-id: sub
  x-user-roles: { claim: realm_access.roles, join: " " }
strip_header_prefixes: [x-jwt-, x-auth-]
max_token_bytes: 8192
token_cache: { max_entries: 100 }
routes:
  - path: /public/**
    upstream: orders
    auth: none
  - path: /admin/**
    methods: [GET, POST]
    upstream: orders
    auth:
      issuers: [idp]
      claims: { roles: { contains: admin } }
  - path: /tenant/*/orders/**
    upstream: orders
    auth:
      issuers: [idp, internal]
      claims:
        tenant: { one_of: [acme, globex] }
        realm_access.roles: { contains: orders }
        email_verified: { equals: true }
  - path: /scoped/**
    upstream: orders
    auth: { issuers: [internal], scopes: ["orders:read", "orders:write"] }
  - path: /num/**
    upstream: orders
    auth:
      issuers: [idp]
      claims:
        level: { equals: 3 }
        '"https://ex.com/plan"': { one_of: [pro, 1, true] }
  - path: /api/**
    upstream: orders
    auth: { issuers: [idp, internal] }
`
const ENV = { INTERNAL_SECRET: SECRET }

/** Loads a policy text; returns 'ok', or throws if anything but a well-formed PolicyError escapes. */
function load(text: string, env: Record<string, string | undefined>): 'ok' | 'refused' {
  let policy: CompiledPolicy
  try {
    policy = compilePolicy(parsePolicySource('policy.yaml', text, env), silent)
  } catch (err) {
    if (!(err instanceof PolicyError)) throw new Error(`not a PolicyError: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
    expect(err.problems.length > 0, 'a PolicyError lists at least one problem')
    for (const p of err.problems) {
      expect(p.file === 'policy.yaml', `problem file: ${p.file}`)
      expect(Number.isInteger(p.line) && p.line >= 1 && Number.isInteger(p.col) && p.col >= 1, `line:col >= 1:1: ${p.line}:${p.col}`)
      expect(typeof p.message === 'string' && p.message.trim().length > 0, 'a problem has a message')
    }
    return 'refused'
  }
  try {
    expect(policy.routes.size >= 1, 'a loaded policy has routes')
  } finally {
    for (const issuer of policy.issuers.values()) issuer.stop()
  }
  return 'ok'
}

const KEYS = [
  'version',
  'listen',
  'host',
  'port',
  'admin',
  'issuers',
  'idp',
  'internal',
  'issuer',
  'jwks_uri',
  'secret',
  'secret_file',
  'audiences',
  'algorithms',
  'clock_skew',
  'require_exp',
  'jwks',
  'timeout',
  'cooldown',
  'min_age',
  'max_age',
  'optional_at_startup',
  'upstreams',
  'orders',
  'url',
  'identity_headers',
  'x-user-id',
  'x_forwarded_for',
  'claim',
  'join',
  'json',
  'routes',
  'path',
  'methods',
  'upstream',
  'auth',
  'claims',
  'scopes',
  'forward_token',
  'contains',
  'equals',
  'one_of',
  'max_token_bytes',
  'token_cache',
  'max_entries',
  'strip_header_prefixes',
  'reject_path_parameters',
  'log',
  'level',
  'shutdown',
  'drain_delay',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  '<<',
  '"quoted key"',
  '? complex',
  'a.b',
  '"https://ex.com/plan"',
]
const VALUES = [
  '1',
  '0',
  '-1',
  '65536',
  '1.5',
  '1e400',
  '.inf',
  '-.inf',
  '.nan',
  'null',
  '~',
  'true',
  'false',
  'yes',
  'no',
  'on',
  '"1"',
  "''",
  '""',
  '"',
  "'",
  '[',
  ']',
  '{',
  '}',
  '[]',
  '{}',
  '[RS256, ES256]',
  '[HS256]',
  '[none]',
  '[HS256, RS256]',
  '[idp]',
  '[idp, nobody]',
  '[GET, GET]',
  '[CONNECT]',
  'none',
  '{ url: "http://127.0.0.1:1" }',
  '{ url: "ftp://x" }',
  'http://127.0.0.1:1',
  'https://idp.example.com/',
  'http://user:pw@h/',
  'http://h/?q#f',
  'http://',
  '/public/**',
  '/a//b',
  '/%2f',
  '/a/*x',
  '/**/**',
  '/',
  'relative',
  '*.a.com',
  'a.*.com',
  'h:80',
  '500ms',
  '10s',
  '1d',
  '1m30s',
  '-5s',
  '0',
  '${INTERNAL_SECRET}',
  '${UNSET}',
  '${X}',
  '${X:-1}',
  '${X:-}',
  '$${X}',
  '${1X}',
  '${',
  '&anchor value',
  '!!str 1',
  '!!int x',
  '!!float x',
  '!!binary aGk=',
  '!!map {}',
  '!!seq []',
  '!custom x',
  '|',
  '>',
  '|-\n  a',
  '0x10',
  '0o17',
  '1_000',
  '2001-12-14',
  SECRET,
  'short',
  '#comment',
  '- a',
  '- { path: /x }',
  '{ contains: admin }',
  '{ equals: [1] }',
  '{ one_of: [] }',
  '{ claim: a..b }',
  '{ claim: "unclosed }',
  'x-forwarded-for',
  'Host',
  'a'.repeat(300),
]
const INDENTS = ['', '', '  ', '    ', '      ', '\t', ' ']
const SEPARATORS = [': ', ': ', ':', ' : ', '- ', ': - ', ': |\n  ', ': >\n    ']

const yamlish = fc
  .array(fc.tuple(fc.constantFrom(...INDENTS), fc.constantFrom(...KEYS), fc.constantFrom(...SEPARATORS), fc.constantFrom(...VALUES)), { maxLength: 30 })
  .map((lines) => lines.map(([indent, key, sep, value]) => indent + key + sep + value).join('\n'))

// Mutations of the good policy as data: set, delete or rename a member anywhere, then write it
// back as YAML or JSON.
type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
const SPECIAL_VALUES: Json[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e308,
  -0,
  65536,
  2 ** 53,
  '',
  ' ',
  '1',
  'none',
  'HS256',
  '/public/**',
  '/a//b',
  'http://x',
  'http://127.0.0.1:1',
  '${X}',
  '${UNSET}',
  '$${X}',
  'idp',
  'orders',
  'x'.repeat(500),
  [],
  {},
  [null],
  ['HS256', 'RS256'],
  { claim: '' },
  { contains: ['admin'] },
  { equals: null },
  { one_of: [{}] },
  JSON.parse('{"__proto__":{"polluted":true}}') as Json,
  { constructor: { prototype: { polluted: true } } },
]
const valueArb: fc.Arbitrary<Json> = fc.oneof(fc.constantFrom(...SPECIAL_VALUES), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>)
const mutation = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('set', 'set', 'delete', 'rename', 'duplicate'),
  value: valueArb,
  name: fc.constantFrom(...KEYS, 'extra', ''),
})

function containers(root: Json): Array<{ parent: Json[] | { [k: string]: Json }; key: string | number }> {
  const out: Array<{ parent: Json[] | { [k: string]: Json }; key: string | number }> = []
  const walk = (node: Json) => {
    if (Array.isArray(node))
      node.forEach((child, i) => {
        out.push({ parent: node, key: i })
        walk(child)
      })
    else if (node !== null && typeof node === 'object')
      for (const k of Object.keys(node)) {
        out.push({ parent: node, key: k })
        walk(node[k]!)
      }
  }
  walk(root)
  return out
}

function mutate(root: Json, mutations: Array<{ at: number; op: string; value: Json; name: string }>): Json {
  for (const m of mutations) {
    const places = containers(root)
    if (places.length === 0) return m.value
    const { parent, key } = places[m.at % places.length]!
    const obj = parent as Record<string | number, Json>
    if (m.op === 'set') obj[key] = structuredClone(m.value)
    else if (m.op === 'delete') {
      if (Array.isArray(parent)) parent.splice(key as number, 1)
      else delete obj[key]
    } else if (m.op === 'rename' && !Array.isArray(parent)) {
      const value = obj[key]!
      delete obj[key]
      Object.defineProperty(obj, m.name, { value, enumerable: true, writable: true, configurable: true })
    } else if (m.op === 'duplicate' && Array.isArray(parent)) {
      parent.splice(key as number, 0, structuredClone(parent[key as number]!))
    } else obj[key] = structuredClone(m.value)
  }
  return root
}

const GOOD_DOC = parseYaml(GOOD) as Json
const mutatedPolicy = fc.tuple(fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.constantFrom('yaml', 'json', 'flow')).map(([mutations, format]) => {
  const doc = mutate(structuredClone(GOOD_DOC), mutations)
  if (format === 'json') return JSON.stringify(doc)
  return format === 'flow' ? stringifyYaml(doc, { collectionStyle: 'flow' }) : stringifyYaml(doc)
})

const textEdit = fc
  .array(
    fc.tuple(
      fc.nat(),
      fc.nat({ max: 8 }),
      fc.oneof(
        fc.constantFrom(':', '-', ' ', '\n', '\t', '{', '}', '[', ']', '"', "'", '&a', '*a', '!', '#', '${', '%', '|', '>', '?', ',', '\u0000', '\ufeff'),
        fc.string({ maxLength: 4 }),
      ),
    ),
    { minLength: 1, maxLength: 5 },
  )
  .map((edits) => {
    let text = GOOD
    for (const [at, remove, insert] of edits) {
      const i = at % (text.length + 1)
      text = text.slice(0, i) + insert + text.slice(i + remove)
    }
    return text
  })

const envArb = fc.record(
  {
    INTERNAL_SECRET: fc.oneof(
      { weight: 6, arbitrary: fc.constant(SECRET) },
      { weight: 1, arbitrary: fc.string({ maxLength: 70 }) },
      { weight: 1, arbitrary: fc.constant(undefined) },
    ),
    X: fc.oneof(
      fc.constantFrom('1', '', 'http://127.0.0.1:1', '/public/**', '${X}', '"', '[a', '{ a: 1 }', '\n', 'true', '8080'),
      fc.string({ maxLength: 20 }),
    ),
  },
  { requiredKeys: [] },
)

t.test('the policy loader', async (t) => {
  // yaml calls process.emitWarning when a map key is itself a map or list; random policies make
  // many of those, and the warning says nothing about jwtgate. Others still get through.
  const emitWarning = process.emitWarning
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (!String(warning).includes('Keys with collection values')) (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest)
  }) as typeof process.emitWarning
  t.teardown(() => {
    process.emitWarning = emitWarning
  })
  t.equal(load(GOOD, ENV), 'ok', 'the base policy loads')
  const outcomes = { ok: 0, refused: 0 }
  const property = (text: string, env: Record<string, string | undefined>) => {
    outcomes[load(text, env)]++
  }
  const timed = (name: string, run: () => void) => {
    const start = performance.now()
    run()
    t.comment(`${name}: ${Math.round(performance.now() - start)} ms ${JSON.stringify(outcomes)}`)
  }
  timed('text', () => holds(t, 'arbitrary text: only ever a PolicyError with file:line:col', fc.property(anyString, envArb, property), 2000, 30))
  timed('yamlish', () => holds(t, 'YAML-ish lines of policy words: only ever a PolicyError', fc.property(yamlish, envArb, property), 2000, 31))
  timed('json', () => holds(t, 'any JSON document: only ever a PolicyError', fc.property(fc.json({ maxDepth: 4 }), envArb, property), 2000, 32))
  timed('mutations', () =>
    holds(t, 'structured mutations of a good policy: only ever a PolicyError, or a policy', fc.property(mutatedPolicy, envArb, property), 1000, 33),
  )
  timed('edits', () => holds(t, 'character edits of a good policy: only ever a PolicyError, or a policy', fc.property(textEdit, envArb, property), 1000, 34))
  t.ok(outcomes.ok > 50 * SCALE, `mutations still load sometimes (${JSON.stringify(outcomes)})`)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no policy polluted Object.prototype')
})

t.test('YAML alias errors are policy problems, and a reload keeps the running policy', async (t) => {
  const aliasTypo = GOOD.replace('  orders: { url: "http://127.0.0.1:3001", timeout: 15s }', '  orders: { url: "http://127.0.0.1:3001", timeout: *typo }')
  const bomb = `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n${GOOD}`
  for (const [what, text] of [
    ['an alias to an anchor that does not exist', aliasTypo],
    ['an alias bomb', bomb],
  ] as const) {
    let error: unknown
    try {
      compilePolicy(parsePolicySource('policy.yaml', text, ENV), silent)
    } catch (err) {
      error = err
    }
    t.ok(error instanceof PolicyError, `${what}: a PolicyError (got ${(error as Error)?.constructor?.name}: ${(error as Error)?.message})`)
  }
  // The same mistake in a reload must leave the old policy serving.
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(
    t,
    `version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: false\nupstreams:\n  orders: { url: "${up.url}" }\nroutes:\n  - { path: /public/**, upstream: orders, auth: none }\n`,
  )
  void idp
  const hash = gw.gateway.policy.hash
  writeFileSync(
    gw.gateway.policy.file,
    `version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: false\nupstreams:\n  orders: { url: "${up.url}", timeout: *typo }\nroutes:\n  - { path: /public/**, upstream: orders, auth: none }\n`,
  )
  let reloaded: unknown
  try {
    reloaded = await gw.reload()
  } catch (err) {
    reloaded = err
  }
  t.equal(reloaded, false, 'the reload is refused, not thrown')
  t.equal(gw.gateway.policy.hash, hash, 'the old policy keeps serving')
})

// ---------------------------------------------------------------------------------------------
// decide()

// What each route of GOOD requires, written out independently of the compiler.
interface Condition {
  path: string[]
  equals?: unknown
  one_of?: unknown[]
  contains?: unknown
}
interface Requirement {
  issuers: Record<string, { audiences: string[] }>
  conditions: Condition[]
  scopes: string[]
}
const IDP = { 'https://idp.example.com/': { audiences: ['orders-api'] } }
const INTERNAL = { 'internal-auth': { audiences: ['orders-api', 'internal-api'] } }
const REQUIREMENTS: Record<string, Requirement | 'none'> = {
  '/public/**': 'none',
  '/admin/**': { issuers: IDP, conditions: [{ path: ['roles'], contains: 'admin' }], scopes: [] },
  '/tenant/*/orders/**': {
    issuers: { ...IDP, ...INTERNAL },
    conditions: [
      { path: ['tenant'], one_of: ['acme', 'globex'] },
      { path: ['realm_access', 'roles'], contains: 'orders' },
      { path: ['email_verified'], equals: true },
    ],
    scopes: [],
  },
  '/scoped/**': { issuers: INTERNAL, conditions: [], scopes: ['orders:read', 'orders:write'] },
  '/num/**': {
    issuers: IDP,
    conditions: [
      { path: ['level'], equals: 3 },
      { path: ['https://ex.com/plan'], one_of: ['pro', 1, true] },
    ],
    scopes: [],
  },
  '/api/**': { issuers: { ...IDP, ...INTERNAL }, conditions: [], scopes: [] },
}
const SKEW_MS = 30_000

function own(value: unknown, path: string[]): unknown {
  let v = value
  for (const name of path) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, name)) return undefined
    v = (v as Record<string, unknown>)[name]
  }
  return v
}

/** The reason code a request with these claims should get on this route, or undefined when it is allowed. */
function expectedReason(claims: Record<string, unknown>, requirement: Requirement, now: number): string | undefined {
  const iss = own(claims, ['iss'])
  const issuer = typeof iss === 'string' && Object.hasOwn(requirement.issuers, iss) ? requirement.issuers[iss]! : undefined
  if (!issuer) return 'wrong_issuer'
  const iat = own(claims, ['iat'])
  if (iat !== undefined) {
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return 'invalid_claims'
    if (iat * 1000 > now + SKEW_MS) return 'issued_in_future'
  }
  const sub = own(claims, ['sub'])
  if (sub !== undefined && typeof sub !== 'string') return 'invalid_claims'
  // Then the route's requirement, whose token check starts with the audience.
  const aud = own(claims, ['aud'])
  if (typeof aud === 'string') {
    if (!issuer.audiences.includes(aud)) return 'wrong_audience'
  } else if (Array.isArray(aud)) {
    let match = false
    for (const a of aud) {
      if (typeof a !== 'string') return 'invalid_claims'
      if (issuer.audiences.includes(a)) match = true
    }
    if (!match) return 'wrong_audience'
  } else if (aud === undefined) return 'wrong_audience'
  else return 'invalid_claims'
  for (const c of requirement.conditions) {
    const v = own(claims, c.path)
    const scalar = typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'
    if (c.equals !== undefined && v !== c.equals) return 'insufficient_claims'
    if (c.one_of !== undefined && !(scalar && c.one_of.includes(v))) return 'insufficient_claims'
    if (c.contains !== undefined && !(Array.isArray(v) && v.includes(c.contains))) return 'insufficient_claims'
  }
  const granted: string[] = []
  for (const v of [own(claims, ['scope']), own(claims, ['scp'])]) {
    if (typeof v === 'string') granted.push(...v.split(' ').filter(Boolean))
    else if (Array.isArray(v)) for (const s of v) if (typeof s === 'string') granted.push(s)
  }
  if (requirement.scopes.some((s) => !granted.includes(s))) return 'insufficient_claims'
  return undefined
}

const CLAIM_NAMES = [
  'iss',
  'aud',
  'sub',
  'iat',
  'exp',
  'nbf',
  'roles',
  'tenant',
  'realm_access',
  'email_verified',
  'scope',
  'scp',
  'level',
  'https://ex.com/plan',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
]
const claimValue: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom<unknown>(
      'https://idp.example.com/',
      'internal-auth',
      'https://idp.example.com',
      'orders-api',
      'internal-api',
      'admin',
      'orders',
      'acme',
      'globex',
      'pro',
      'orders:read orders:write',
      'orders:read',
      'orders:write orders:read extra',
      ' orders:read  orders:write ',
      ['orders:read', 'orders:write'],
      ['orders-api'],
      ['x', 'orders-api'],
      ['orders-api', 1],
      ['admin'],
      ['admin', 'orders'],
      'admin',
      { roles: ['orders'] },
      { roles: 'orders' },
      { roles: ['orders'], __proto__: null },
      true,
      false,
      'true',
      1,
      3,
      '3',
      3.0000001,
      null,
      [],
      {},
      0,
      -1,
      1e308,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      4102444800,
      946684800,
      [null],
      [[]],
      ['orders:read'],
      'alice',
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
)
const claimsArb = fc
  .array(fc.tuple(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...CLAIM_NAMES) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) }), claimValue), {
    maxLength: 12,
  })
  .map((entries) => {
    const claims: Record<string, unknown> = {}
    // Own properties only, as JSON.parse makes them, "__proto__" included.
    for (const [k, v] of entries) Object.defineProperty(claims, k, { value: v, enumerable: true, writable: true, configurable: true })
    return claims
  })
// A good base, so that requests get past iss and aud often enough to reach the route rules.
const likelyClaims = fc.tuple(fc.constantFrom('https://idp.example.com/', 'internal-auth'), claimsArb, fc.boolean()).map(([iss, extra, base]) => {
  if (!base) return extra
  const claims: Record<string, unknown> = { iss, aud: 'orders-api', sub: 'alice' }
  for (const k of Object.keys(extra)) Object.defineProperty(claims, k, { value: extra[k], enumerable: true, writable: true, configurable: true })
  return claims
})
const TARGETS = [
  '/public/x',
  '/admin/users',
  '/admin',
  '/tenant/acme/orders/7',
  '/tenant/x/orders',
  '/tenant//orders/1',
  '/scoped/a',
  '/num/1',
  '/api/x',
  '/api',
  '/other',
  '/public/../admin/x',
  '/tenant/acme/../../admin/y',
]

t.test('decide() with claims taken as verified', async (t) => {
  const policy = compilePolicy(parsePolicySource('policy.yaml', GOOD, ENV), silent)
  t.teardown(() => {
    for (const issuer of policy.issuers.values()) issuer.stop()
  })
  const counts = { allowed: 0, denied: 0 }
  await holdsAsync(
    t,
    'never throws, never allows what the route requires and the claims lack, never denies what they meet',
    fc.asyncProperty(fc.constantFrom('GET', 'POST', 'DELETE'), fc.constantFrom(...TARGETS), likelyClaims, async (method, target, claims) => {
      const out: Decision = {}
      const pending = decide(policy, method, '127.0.0.1', target, { claims }, out)
      if (pending) await pending
      if (!out.route) {
        expect(out.denial?.reason === 'no_route' || out.denial?.reason === 'bad_path', `no route means 404 or 400: ${JSON.stringify(out.denial)}`)
        return
      }
      // The derived route name: the methods, if any, then the path (no host in this policy).
      const pattern = out.route.name.replace(/^[A-Z,]+ /, '')
      const requirement = REQUIREMENTS[pattern]
      expect(requirement !== undefined, `known route ${pattern}`)
      if (requirement === 'none') {
        expect(!out.denial && !out.identity, 'auth: none allows without identity')
        counts.allowed++
        return
      }
      const reason = expectedReason(claims, requirement!, Date.now())
      if (reason === undefined) {
        expect(!out.denial, `${method} ${target} ${JSON.stringify(claims)} should be allowed, got ${out.denial?.reason}`)
        expect(out.identity?.claims === claims, 'the identity carries the claims')
        counts.allowed++
      } else {
        expect(out.denial?.reason === reason, `${method} ${target} ${JSON.stringify(claims)}: expected ${reason}, got ${out.denial?.reason ?? 'ALLOW'}`)
        expect(out.denial?.status === (reason === 'insufficient_claims' ? 403 : 401), 'status')
        counts.denied++
      }
    }),
    4000,
    40,
  )
  t.ok(counts.allowed > 200 && counts.denied > 200, `both outcomes are exercised (${JSON.stringify(counts)})`)
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})
