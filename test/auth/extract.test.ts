// Reading Cookie headers and query strings the way the extractor and the forwarding step must
// agree on: what was taken as the token is exactly what is removed.
import t from 'tap'
import { cookieValue, extractToken, findCookie, findParameter, parameterValue } from '../../src/auth/extract.js'
import { isDenial } from '../../src/http/denial.js'
import { IssuerSet } from '../../src/auth/issuer_set.js'
import { sourcePlace, tokenSources, type SourcePlace } from '../../src/auth/token_sources.js'
import type { TokenSourceDocument } from '../../src/policy/schema.js'
import { cookiesWithout, queryWithout } from '../../src/proxy/token_removal.js'

function sources(...specs: TokenSourceDocument[]) {
  return tokenSources(
    specs.map((s) => ({
      ...(sourcePlace(s, [], (_at, m) => {
        throw new Error(m)
      }) as SourcePlace),
      issuers: new IssuerSet([]),
    })),
  )
}

function cookie(header: string, name: string): string[] {
  const out: string[] = []
  for (
    let at = findCookie(header, name, 0);
    at >= 0;
    at = findCookie(header, name, header.indexOf(';', at) < 0 ? header.length : header.indexOf(';', at) + 1)
  ) {
    out.push(cookieValue(header, at))
  }
  return out
}

t.test('cookies: RFC 6265 pairs, optional whitespace and quotes, exact names', async (t) => {
  t.same(cookie('session=abc', 'session'), ['abc'])
  t.same(cookie('a=1; session=abc; b=2', 'session'), ['abc'])
  t.same(cookie('a=1;session=abc;b=2', 'session'), ['abc'])
  t.same(cookie(' \tsession \t= \t"abc" \t; b=2', 'session'), ['abc'], 'whitespace around name and value, quotes removed')
  t.same(cookie('session="abc', 'session'), ['"abc'], 'an unbalanced quote stays')
  t.same(cookie('session=a=b', 'session'), ['a=b'], 'a value may hold "="')
  t.same(cookie('x=session=abc', 'session'), [], 'a name inside another value does not count')
  t.same(cookie('session=a=b; session=c', 'session'), ['a=b', 'c'])
  t.same(cookie('Session=abc; sessionx=1; xsession=2; session', 'session'), [], 'case, longer names and a bare name do not count')
  t.same(cookie('session=', 'session'), [''])
  t.same(cookie(';;session=abc;;', 'session'), ['abc'])
})

t.test('query parameters: decoded names, values up to the next &', async (t) => {
  const value = (url: string, name: string) => {
    const out: string[] = []
    for (
      let at = findParameter(url, name, url.indexOf('?') + 1);
      at >= 0;
      at = findParameter(url, name, url.indexOf('&', at) < 0 ? url.length : url.indexOf('&', at) + 1)
    )
      out.push(parameterValue(url, at))
    return out
  }
  t.same(value('/p?access_token=abc', 'access_token'), ['abc'])
  t.same(value('/p?a=1&access_token=abc&b=2', 'access_token'), ['abc'])
  t.same(value('/p?access%5Ftoken=abc&access%5ftoken=d', 'access_token'), ['abc', 'd'], 'percent-encoded names')
  t.same(value('/p?access_token=a%2Eb', 'access_token'), ['a.b'], 'decoded value')
  t.same(value('/p?x=access_token=abc&access_token', 'access_token'), [''], 'a name inside a value does not count; a bare name is empty')
  t.same(value('/p?access_token=access_token=x', 'access_token'), ['access_token=x'])
  t.same(value('/p?access_tokens=1&%zz=2&access_token%=3', 'access_token'), [], 'near names and undecodable names do not count')
})

t.test('the parts the upstream gets: token parameters and cookies removed, the rest byte for byte', async (t) => {
  t.equal(queryWithout('/p?a=1&access_token=x&b=%2F+c&&d', ['access_token']), 'a=1&b=%2F+c&d')
  t.equal(queryWithout('/p?access%5Ftoken=x', ['access_token']), '')
  t.equal(queryWithout('/p', ['access_token']), '')
  t.equal(queryWithout('/p?access_token', ['access_token']), '')
  t.equal(cookiesWithout('a=1; session=x; b="2"', ['session']), 'a=1; b="2"')
  t.equal(cookiesWithout(' session = x ;session=y', ['session']), undefined)
  t.equal(cookiesWithout('a=session=x', ['session']), 'a=session=x')
})

t.test('extractToken: one token, from one place', async (t) => {
  const all = sources({ header: 'Authorization' }, { cookie: 'session' }, { query: 'access_token' })
  const found = (raw: string[], url = '/p') => {
    const r = extractToken(raw, url, all, 100)
    return isDenial(r) ? `${r.status} ${r.reason}: ${r.description}` : `${r.source.what}: ${r.token}`
  }
  t.equal(found(['Authorization', 'Bearer  abc ']), 'Authorization header: abc')
  t.equal(found(['cookie', 'session="abc"']), 'session cookie: abc')
  t.equal(found([], '/p?access_token=abc'), 'access_token query parameter: abc')
  t.equal(
    found(['Authorization', 'Basic x', 'Cookie', 'session=abc']),
    '401 malformed: the Authorization header does not carry a Bearer token',
    'another scheme beside a token: refused, never an unchecked credential next to a checked one',
  )
  t.equal(found(['Authorization', 'Basic x']), '401 malformed: the Authorization header does not carry a Bearer token')
  t.equal(found([]), '401 missing_token: a bearer token is required')
  t.equal(found(['authorization', 'Basic x', 'AUTHORIZATION', 'Bearer y']), '400 multiple_tokens: more than one Authorization header')
  t.equal(found(['cookie', 'session=a', 'cookie', 'session=b']), '400 multiple_tokens: more than one session cookie')
  t.equal(
    found(['Authorization', 'Bearer a'], '/p?access_token=b'),
    '400 multiple_tokens: tokens in more than one place: the Authorization header and the access_token query parameter',
  )
  t.equal(found(['Authorization', 'Bearer    ']), '401 malformed: the bearer token is empty')
  t.equal(found(['Authorization', `Bearer ${'x'.repeat(101)}`]), '401 token_too_large: the token is larger than 100 bytes')
  t.equal(found(['cookie']), '401 missing_token: a bearer token is required', 'an odd list does not break it')
})

t.test('extractToken: a malformed Authorization is 401 malformed (invalid_token), never "no token"', async (t) => {
  const bearer = sources({ header: 'Authorization' })
  for (const value of ['Bearer\tforged', 'Bearer', 'Bearer\t', 'Bearerx', 'JWT forged', 'jwt x', 'Basic YTpi', '', ' Bearer x', 'bearer', 'Token x']) {
    const r = extractToken(['Authorization', value], '/p', bearer, 100)
    t.match(r, { status: 401, reason: 'malformed' }, JSON.stringify(value))
  }
  t.match(extractToken(['Authorization', 'Bearer '], '/p', bearer, 100), { status: 401, reason: 'malformed' }, 'an empty token too')
  t.match(extractToken(['Accept', '*/*'], '/p', bearer, 100), { status: 401, reason: 'missing_token' }, 'no Authorization at all is no token')
  const jwtPrefix = sources({ header: 'Authorization', prefix: 'JWT ' })
  t.match(extractToken(['Authorization', 'Bearer x'], '/p', jwtPrefix, 100), { reason: 'malformed' }, 'Bearer where JWT is read')
})
