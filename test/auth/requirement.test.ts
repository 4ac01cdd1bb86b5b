// The requirement tree: compiled from the policy's auth section, checked on a verified token.
import t from 'tap'
import { DEFAULT_TOKEN_SOURCES } from '../../src/auth/token_sources.js'
import { secretIssuer, type Issuer } from '../../src/auth/issuer.js'
import { compileRequirement, type Requirement, type TokenFacts } from '../../src/auth/requirement.js'
import type { Denial } from '../../src/http/denial.js'
import type { RequirementDocument } from '../../src/policy/schema.js'

function hmacIssuer(name: string, iss: string, audiences: string[]): Issuer {
  return secretIssuer(
    { name, issuer: iss, audiences, algorithms: ['HS256'], clockSkewMs: 5000, requireExp: true, tokenSources: DEFAULT_TOKEN_SOURCES },
    Buffer.alloc(32, name),
  )
}
const idp = hmacIssuer('idp', 'https://idp.example.com/', ['orders-api'])
const internal = hmacIssuer('internal', 'internal-auth', ['orders-api', 'internal-api'])
const ISSUERS = new Map([
  ['idp', idp],
  ['internal', internal],
])

function compile(doc: RequirementDocument): Requirement {
  const problems: string[] = []
  const requirement = compileRequirement(doc, ['auth'], { issuers: ISSUERS, problem: (at, m) => problems.push(`${at.join('.')}: ${m}`) })
  if (!requirement) throw new Error(problems.join('\n'))
  return requirement
}

function problemsOf(doc: RequirementDocument): string[] {
  const problems: string[] = []
  compileRequirement(doc, ['auth'], { issuers: ISSUERS, problem: (at, m) => problems.push(`${at.join('.')}: ${m}`) })
  return problems
}

const now = Date.now()
function token(issuer: Issuer, claims: Record<string, unknown>, typ: string | undefined | null = 'JWT'): TokenFacts {
  return { issuer, claims: { iss: issuer.issuer, aud: [...issuer.audiences][0], iat: Math.floor(now / 1000), ...claims }, typ }
}

t.test('one token check: issuer, audience, claims, scopes', async (t) => {
  const r = compile({ issuers: ['idp'], claims: { roles: { contains: 'admin' } }, scopes: ['orders:write'] })
  t.same(
    r.issuers.map((i) => i.issuer),
    ['https://idp.example.com/'],
    'the issuers the route accepts, by iss',
  )
  t.equal(r.check(token(idp, { roles: ['admin'], scope: 'orders:write' }), now), undefined)
  t.match(r.check(token(internal, {}), now), { status: 401, reason: 'wrong_issuer' })
  t.match(r.check(token(idp, { aud: 'billing' }), now), { status: 401, reason: 'wrong_audience' })
  t.match(r.check(token(idp, { roles: ['reader'], scope: 'orders:write' }), now), {
    status: 403,
    reason: 'insufficient_claims',
    description: 'the token lacks the required claim roles (it must contain "admin")',
    check: { claim: 'roles', found: ['reader'], wanted: 'must contain "admin"' },
    scope: 'orders:write',
  })
  t.match(r.check(token(idp, { roles: ['admin'] }), now), { status: 403, description: 'the token lacks a required scope', scope: 'orders:write' })
})

t.test("audiences: the requirement's own replace the issuer's", async (t) => {
  const r = compile({ issuers: ['idp'], audiences: ['admin-api'] })
  t.equal(r.check(token(idp, { aud: 'admin-api' }), now), undefined)
  t.match(r.check(token(idp, { aud: 'orders-api' }), now), { reason: 'wrong_audience' }, "the issuer's audience no longer counts here")
})

t.test("audience_claim: the issuer's own audience claim is read, for its audiences and the requirement's", async (t) => {
  const cognito = secretIssuer(
    {
      name: 'cognito',
      issuer: 'https://cognito.example.com/',
      audiences: ['app-client'],
      audienceClaim: 'client_id',
      algorithms: ['HS256'],
      clockSkewMs: 5000,
      requireExp: true,
      tokenSources: DEFAULT_TOKEN_SOURCES,
    },
    Buffer.alloc(32, 'c'),
  )
  const issuers = new Map([['cognito', cognito]])
  const compileWith = (doc: RequirementDocument) => compileRequirement(doc, ['auth'], { issuers, problem: () => {} })!
  const facts = (claims: Record<string, unknown>): TokenFacts => ({ issuer: cognito, claims: { iss: cognito.issuer, ...claims }, typ: 'JWT' })
  const plain = compileWith({ issuers: ['cognito'] })
  t.equal(plain.check(facts({ client_id: 'app-client' }), now), undefined)
  t.match(
    plain.check(facts({ aud: 'app-client' }), now),
    { reason: 'wrong_audience', description: 'the token has no client_id claim' },
    'aud is not what this issuer is checked by',
  )
  const own = compileWith({ issuers: ['cognito'], audiences: ['admin-client'] })
  t.equal(own.check(facts({ client_id: 'admin-client' }), now), undefined)
  t.match(own.check(facts({ client_id: 'app-client', aud: 'admin-client' }), now), { reason: 'wrong_audience' })
})

t.test('typ: compared as a media type, case-insensitively, application/ optional', async (t) => {
  const r = compile({ issuers: ['idp'], typ: 'at+jwt' })
  for (const typ of ['at+jwt', 'AT+JWT', 'application/at+jwt', 'Application/AT+JWT']) t.equal(r.check(token(idp, {}, typ), now), undefined, typ)
  for (const typ of ['JWT', 'application/jwt', 'at+jwt2', undefined])
    t.match(r.check(token(idp, {}, typ), now), { status: 401, reason: 'wrong_type' }, String(typ))
  t.equal(r.check(token(idp, {}, null), now), undefined, 'null: claims given as verified, no header to check')
  const either = compile({ issuers: ['idp'], typ: ['application/at+jwt', 'JWT'] })
  t.equal(either.check(token(idp, {}, 'jwt'), now), undefined)
  t.equal(either.check(token(idp, {}, 'at+JWT'), now), undefined)
})

t.test('require_claims and max_age', async (t) => {
  const r = compile({ issuers: ['idp'], require_claims: ['jti', 'ctx.session'], max_age: '10m' })
  const fresh = { jti: 'j1', ctx: { session: 's' } }
  t.equal(r.check(token(idp, fresh), now), undefined)
  t.match(r.check(token(idp, { ...fresh, jti: null }), now), {
    status: 401,
    reason: 'invalid_claims',
    description: 'the token lacks the claim jti, which this route requires',
  })
  t.match(r.check(token(idp, { jti: 'j1' }), now), { description: /the claim ctx\.session/ })
  t.match(r.check(token(idp, { ...fresh, iat: undefined }), now), {
    status: 401,
    reason: 'invalid_claims',
    description: 'the token has no iat claim, which max_age needs',
  })
  t.match(
    r.check(token(idp, { ...fresh, iat: now / 1000 - 601 - 5 }), now),
    { status: 401, reason: 'expired', description: /max_age/ },
    'older than max_age plus the skew',
  )
  t.equal(r.check(token(idp, { ...fresh, iat: now / 1000 - 603 }), now), undefined, "within the issuer's clock skew")
})

t.test('any: met by one alternative', async (t) => {
  const r = compile({ any: [{ issuers: ['idp'], claims: { roles: { contains: 'admin' } } }, { issuers: ['internal'] }] })
  t.same(
    r.issuers.map((i) => i.issuer),
    ['https://idp.example.com/', 'internal-auth'],
  )
  t.equal(r.check(token(idp, { roles: ['admin'] }), now), undefined)
  t.equal(r.check(token(internal, {}), now), undefined)
})

t.test('any: the denial of the alternative the token got furthest in', async (t) => {
  const r = compile({
    any: [
      { issuers: ['internal'], scopes: ['svc'] },
      { issuers: ['idp'], audiences: ['admin-api'] },
      { issuers: ['idp'], claims: { roles: { contains: 'admin' } }, scopes: ['orders:admin'] },
    ],
  })
  // An idp token lacking the role: the 403 of the third alternative, not the wrong_issuer of the first.
  t.match(r.check(token(idp, { aud: ['orders-api', 'admin-api'].slice(0, 1), roles: [] }), now), {
    status: 403,
    reason: 'insufficient_claims',
    scope: 'orders:admin',
  })
  const audienceOnly = compile({ any: [{ issuers: ['internal'] }, { issuers: ['idp'], audiences: ['admin-api'] }] })
  t.match(audienceOnly.check(token(idp, {}), now), { status: 401, reason: 'wrong_audience' }, 'a wrong audience over a wrong issuer')
  // Two 403s: the first written wins, with its own scopes.
  const twoScopes = compile({
    any: [
      { issuers: ['idp'], scopes: ['a'] },
      { issuers: ['idp'], scopes: ['b'] },
    ],
  })
  t.match(twoScopes.check(token(idp, {}), now), { status: 403, scope: 'a' })
  const typed = compile({ any: [{ issuers: ['internal'] }, { issuers: ['idp'], typ: 'at+jwt' }] })
  t.match(typed.check(token(idp, {}), now), { reason: 'wrong_type' }, 'a wrong type over a wrong issuer')
  const none = compile({ any: [{ issuers: ['internal'] }, { issuers: ['internal'], scopes: ['x'] }] })
  t.same(
    none.issuers.map((i) => i.issuer),
    ['internal-auth'],
  )
})

t.test('all: every requirement; the first unmet gives the denial, naming every scope', async (t) => {
  const r = compile({
    all: [
      { issuers: ['idp', 'internal'], scopes: ['orders:read'] },
      { issuers: ['idp'], claims: { tier: { equals: 'gold' } } },
    ],
  })
  t.same(
    r.issuers.map((i) => i.issuer),
    ['https://idp.example.com/'],
    'only issuers every part accepts',
  )
  t.equal(r.check(token(idp, { scope: 'orders:read', tier: 'gold' }), now), undefined)
  t.match(r.check(token(idp, { scope: 'orders:read', tier: 'silver' }), now), { status: 403, description: /claim tier/, scope: 'orders:read' })
  t.match(r.check(token(idp, { tier: 'gold' }), now), { status: 403, description: /scope/, scope: 'orders:read' })
})

t.test('nested: all of any', async (t) => {
  const r = compile({
    all: [
      {
        any: [
          { issuers: ['idp'], claims: { roles: { contains: 'admin' } } },
          { issuers: ['idp'], scopes: ['orders:admin'] },
        ],
      },
      { issuers: ['idp'], claims: { email_verified: { equals: true } }, scopes: ['orders:read'] },
    ],
  })
  t.equal(r.check(token(idp, { roles: ['admin'], email_verified: true, scope: 'orders:read' }), now), undefined)
  t.equal(r.check(token(idp, { scope: 'orders:admin orders:read', email_verified: true }), now), undefined)
  t.match(r.check(token(idp, { roles: ['admin'], scope: 'orders:read' }), now), { status: 403, description: /email_verified/, scope: 'orders:read' })
  t.match(r.check(token(idp, { email_verified: true, scope: 'orders:read' }), now), { status: 403, description: /roles/ })
})

t.test('every failed check, with what it found and wanted, for explain; the answer stays the first', async (t) => {
  const r = compile({
    issuers: ['idp'],
    audiences: ['admin-api'],
    typ: 'at+jwt',
    require_claims: ['jti'],
    claims: { roles: { contains: 'admin' } },
    scopes: ['a'],
  })
  const bad = token(idp, { aud: 'orders-api', roles: ['reader'], scope: 'b' })
  const all: Denial[] = []
  const answer = r.check(bad, now, all)
  t.same(answer, r.check(bad, now), 'the same answer as without the list')
  t.same(
    all.map((d) => [d.reason, d.check]),
    [
      ['wrong_audience', { claim: 'aud', found: 'orders-api', wanted: 'must be "admin-api"', accepted: ['admin-api'] }],
      ['wrong_type', { claim: 'typ', found: 'JWT', wanted: 'must be "at+jwt"' }],
      ['invalid_claims', { claim: 'jti', wanted: 'must be present' }],
      ['insufficient_claims', { claim: 'roles', found: ['reader'], wanted: 'must contain "admin"' }],
      ['insufficient_claims', { claim: 'scope', found: ['b'], wanted: 'must grant a' }],
    ],
  )
  const met: Denial[] = []
  t.equal(r.check(token(idp, { aud: 'admin-api', jti: 'j', roles: ['admin'], scope: 'a' }, 'at+jwt'), now, met), undefined)
  t.same(met, [])
  // any: the failures of the alternative whose answer it is; all: of every part.
  const any = compile({ any: [{ issuers: ['internal'] }, { issuers: ['idp'], claims: { roles: { contains: 'admin' } }, scopes: ['a'] }] })
  const anyAll: Denial[] = []
  t.match(any.check(token(idp, { roles: [] }), now, anyAll), { reason: 'insufficient_claims' })
  t.same(
    anyAll.map((d) => d.check?.claim),
    ['roles', 'scope'],
  )
  const both = compile({
    all: [
      { issuers: ['idp'], scopes: ['a'] },
      { issuers: ['idp'], require_claims: ['jti'] },
    ],
  })
  const bothAll: Denial[] = []
  t.match(both.check(token(idp, {}), now, bothAll), { reason: 'insufficient_claims', scope: 'a' })
  t.same(
    bothAll.map((d) => d.check?.claim),
    ['scope', 'jti'],
  )
})

t.test('a requirement that cannot work is refused with where and why', async (t) => {
  t.same(problemsOf({}), ['auth: a requirement needs issuers, any or all'])
  t.same(problemsOf({ issuers: ['idp'], any: [{ issuers: ['idp'] }] }), [
    'auth: a requirement has one of issuers, any or all, not several (found issuers, any)',
  ])
  t.same(problemsOf({ any: [{ issuers: ['idp'] }], claims: { a: { equals: 1 } }, scopes: ['s'] }), [
    'auth.claims: claims, scopes belong to a requirement with issuers; with any, put them in each requirement of the list',
  ])
  t.same(problemsOf({ any: [{ issuers: ['idp', 'nope'] }, { all: [{ issuers: ['other'] }] }] }), [
    'auth.any.0.issuers.1: unknown issuer "nope" (known: idp, internal)',
    'auth.any.1.all.0.issuers.0: unknown issuer "other" (known: idp, internal)',
  ])
  t.same(problemsOf({ all: [{ issuers: ['idp'] }, { issuers: ['internal'] }] }), [
    'auth.all: no issuer is accepted by every requirement of all: a token has one iss, so this requirement can never be met',
  ])
  t.same(
    problemsOf({
      issuers: ['idp'],
      claims: { email: { matches: '(a)\\1' }, 'x..y': { exists: true }, gone: { exists: false, equals: 1 } },
      require_claims: ['"open'],
      max_age: 0,
    }),
    [
      'auth.claims.email.matches: regular expression "(a)\\\\1" is refused: it cannot run in linear time (no backreferences or lookaround); RE2: invalid escape sequence: `\\1`',
      'auth.claims.x..y: empty name in claim path x..y',
      'auth.claims.gone.exists: exists: false cannot be combined with other conditions: an absent claim fails them all',
      'auth.require_claims.0: unclosed quote in claim path "open',
      'auth.max_age: max_age must be more than 0',
    ],
  )
})
