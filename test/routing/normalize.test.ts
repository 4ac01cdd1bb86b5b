import t from 'tap'
import { normalizePath, splitTarget, type NormalizedPath } from '../../src/routing/normalize.js'

const STRICT = { rejectPathParameters: true }
const LAX = { rejectPathParameters: false }

function ok(t: Tap, cases: Array<[string, string]>, options = STRICT): void {
  for (const [input, expected] of cases) {
    t.same(normalizePath(input, options), { ok: true, path: expected }, `${show(input)} -> ${expected}`)
  }
}

function refused(t: Tap, cases: Array<[string, string]>, options = STRICT): void {
  for (const [input, reason] of cases) {
    const r = normalizePath(input, options)
    t.equal(r.ok, false, `${show(input)} is refused`)
    if (!r.ok) t.equal(r.reason, reason, `${show(input)}: ${reason}`)
  }
}

const DOUBLE = 'percent-encoding that a second decoding would decode again (%25 followed by an escape)'
const NFKC = 'a character that Unicode compatibility normalization (NFKC) turns into ., / or \\'

type Tap = Pick<typeof t, 'ok' | 'equal' | 'same'>

/** A test name that keeps control and non-ASCII characters out of the TAP stream. */
function show(s: string): string {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

t.test('splitTarget splits at the first ? and keeps the query byte for byte', (t) => {
  t.same(splitTarget('/a/b'), { path: '/a/b', query: '' })
  t.same(splitTarget('/a?'), { path: '/a', query: '?' })
  t.same(splitTarget('/a/%2e%2e?x=/../%2F&y=%ZZ?z#f'), { path: '/a/%2e%2e', query: '?x=/../%2F&y=%ZZ?z#f' })
  t.same(splitTarget('?q'), { path: '', query: '?q' })
  t.same(splitTarget(''), { path: '', query: '' })
  t.same(splitTarget('/a#frag?q'), { path: '/a#frag', query: '?q' }, '# is not special: the path keeps it and normalizePath refuses it')
  t.end()
})

t.test('the path must start with /', (t) => {
  refused(t, [
    ['', 'path must start with /'],
    ['*', 'path must start with /'],
    ['http://host/admin', 'path must start with /'],
    ['admin', 'path must start with /'],
    ['%2Fadmin', 'path must start with /'],
    ['\\admin', 'path must start with /'],
  ])
  t.end()
})

t.test('already normal paths are returned as the same string', (t) => {
  for (const p of ['/', '/a', '/a/b/', '/api/v1/orders/123', "/a-b_c~d/e.f/g..h/!$&'()*+,=:@", '/a.', '/a/b.', '/a/x.b', '/a~/-_']) {
    const r = normalizePath(p, STRICT)
    t.ok(r.ok && r.path === p, p)
  }
  t.end()
})

t.test('runs of slashes collapse to one', (t) => {
  ok(t, [
    ['//a///b', '/a/b'],
    ['//admin', '/admin'],
    ['//', '/'],
    ['///', '/'],
    ['/a//', '/a/'],
    ['/a/b//', '/a/b/'],
  ])
  t.end()
})

t.test('dot segments are removed (RFC 3986 §5.2.4)', (t) => {
  ok(t, [
    ['/./admin', '/admin'],
    ['/a/./b', '/a/b'],
    ['/a/b/../c', '/a/c'],
    ['/public/../admin/x', '/admin/x'],
    ['/../a', '/a'],
    ['/../../../a', '/a'],
    ['/..', '/'],
    ['/.', '/'],
    ['/a/..', '/'],
    ['/a/../', '/'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/b/', '/a/b/'],
    ['/a/b/../', '/a/'],
    ['/a/.../b', '/a/.../b'],
    ['/a/.b/..c/', '/a/.b/..c/'],
    ['/a//../b', '/b'],
    ['/.well-known/jwks.json', '/.well-known/jwks.json'],
  ])
  t.end()
})

t.test('encoded dot segments are removed after decoding, once', (t) => {
  ok(t, [
    ['/public/%2e%2e/admin/x', '/admin/x'],
    ['/public/.%2E/admin', '/admin'],
    ['/public/%2E%2e/admin', '/admin'],
    ['/public/%2e./admin', '/admin'],
    ['/%2e/admin', '/admin'],
    ['/a/%2e', '/a/'],
    ['/a/b/%2e%2e', '/a/'],
  ])
  // Double encoding must not be decoded twice: %25 stays, so this is a literal segment, marked
  // ambiguous for decide() to refuse (an upstream that decodes twice reads `..`).
  for (const input of ['/public/%252e%252e/admin', '/public/%25252e/admin']) {
    const r = normalizePath(input, STRICT)
    t.same(r, { ok: true, path: input, ambiguous: DOUBLE }, input)
  }
  t.end()
})

t.test('encoded unreserved characters are decoded (§2.3)', (t) => {
  ok(t, [
    ['/%61dmin/x', '/admin/x'],
    ['/%41%5A%61%7A%30%39%2D%2E%5F%7E', '/AZaz09-._~'],
    ['/%7e%5f', '/~_'],
    ['/a%2Db', '/a-b'],
  ])
  t.end()
})

t.test('other escapes are kept, in upper case', (t) => {
  ok(t, [
    ['/a%20b', '/a%20b'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/caf%C3%a9', '/caf%C3%A9'],
    ['/%2a', '/%2A'],
    ['/%3f%23', '/%3F%23'],
    ['/%25', '/%25'],
    ['/%21%24%26%27%28%29%2B%2C%3D%3A%40', '/%21%24%26%27%28%29%2B%2C%3D%3A%40'],
    ['/%e2%82%ac', '/%E2%82%AC'],
    ['/%F0%9F%98%80', '/%F0%9F%98%80'],
    ['/%f4%8f%bf%bf', '/%F4%8F%BF%BF'],
    ['/%ee%80%80', '/%EE%80%80'],
    ['/%C2%80', '/%C2%80'],
  ])
  t.end()
})

t.test('printable characters not allowed raw in a path are percent-encoded', (t) => {
  ok(t, [
    ['/a b', '/a%20b'],
    ['/"x"', '/%22x%22'],
    ['/<x>', '/%3Cx%3E'],
    ['/a^b`c', '/a%5Eb%60c'],
    ['/{a|b}', '/%7Ba%7Cb%7D'],
    ['/[x]', '/%5Bx%5D'],
  ])
  t.end()
})

t.test('raw pchar characters stay raw', (t) => {
  ok(
    t,
    [
      ["/a!$&'()*+,=:@b/", "/a!$&'()*+,=:@b/"],
      ['/a;b', '/a;b'],
    ],
    LAX,
  )
  ok(t, [["/x/../a!$&'()*+,=:@b", "/a!$&'()*+,=:@b"]])
  t.end()
})

t.test('encoded slash and backslash are refused', (t) => {
  refused(t, [
    ['/admin%2fx', 'encoded slash in path'],
    ['/admin%2Fx', 'encoded slash in path'],
    ['/public/..%2fadmin', 'encoded slash in path'],
    ['/public/..%5cadmin', 'encoded backslash in path'],
    ['/public/..%5Cadmin', 'encoded backslash in path'],
  ])
  t.end()
})

t.test('raw backslash is refused', (t) => {
  refused(t, [
    ['/public\\..\\admin', 'backslash in path'],
    ['/a\\b', 'backslash in path'],
  ])
  t.end()
})

t.test('NUL and control characters are refused, raw or encoded', (t) => {
  refused(t, [
    ['/a/%00', 'NUL byte in path'],
    ['/a/\u0000', 'NUL byte in path'],
    ['/a%0a', 'control character in path'],
    ['/a%0D%0Ab', 'control character in path'],
    ['/a%1f', 'control character in path'],
    ['/a%7F', 'control character in path'],
    ['/a%09', 'control character in path'],
    ['/a\nb', 'control character in path'],
    ['/a\rb', 'control character in path'],
    ['/a\tb', 'control character in path'],
    ['/a\u001fb', 'control character in path'],
    ['/a\u007fb', 'control character in path'],
  ])
  t.end()
})

t.test('malformed percent escapes are refused', (t) => {
  refused(t, [
    ['/a%', 'malformed percent-encoding in path'],
    ['/a%4', 'malformed percent-encoding in path'],
    ['/a%G1', 'malformed percent-encoding in path'],
    ['/a%1G', 'malformed percent-encoding in path'],
    ['/a%%41', 'malformed percent-encoding in path'],
    ['/%/', 'malformed percent-encoding in path'],
    ['/a% 1', 'malformed percent-encoding in path'],
  ])
  t.end()
})

t.test('percent-encoded bytes must be valid UTF-8', (t) => {
  const reason = 'percent-encoded bytes are not valid UTF-8'
  refused(t, [
    ['/a/%C0%AE%C0%AE/', reason], // overlong '.', the classic IIS traversal
    ['/%C0%AF', reason], // overlong '/'
    ['/%C1%81', reason],
    ['/%E0%80%AF', reason], // three-byte overlong
    ['/%E0%9F%BF', reason],
    ['/%F0%80%80%AF', reason], // four-byte overlong
    ['/%F0%8F%BF%BF', reason],
    ['/%ED%A0%80', reason], // lone high surrogate
    ['/%ED%BF%BF', reason], // low surrogate
    ['/%F4%90%80%80', reason], // past U+10FFFF
    ['/%F5%80%80%80', reason],
    ['/%FF', reason],
    ['/%80', reason], // continuation byte without a lead
    ['/%BF', reason],
    ['/%C3', reason], // truncated
    ['/%C3/', reason],
    ['/%C3%', reason],
    ['/%C3%41', reason], // lead followed by ASCII
    ['/%E2%82', reason],
    ['/%E2%82%41', reason],
    ['/%F0%9F%98', reason],
    ['/%C3%A9%A9', reason], // stray continuation after a complete sequence
    ['/%C3%G9', reason],
  ])
  t.end()
})

t.test('raw non-ASCII characters are refused', (t) => {
  refused(t, [
    ['/caf\u00e9', 'non-ASCII characters in path must be percent-encoded'],
    ['/a\u0080', 'non-ASCII characters in path must be percent-encoded'],
    ['/\u00ff', 'non-ASCII characters in path must be percent-encoded'],
    ['/\u2028', 'non-ASCII characters in path must be percent-encoded'],
    ['/\ud83d\ude00', 'non-ASCII characters in path must be percent-encoded'],
  ])
  t.end()
})

t.test('# and ? in the path are refused', (t) => {
  refused(t, [
    ['/admin#x', "'#' in path"],
    ['/#', "'#' in path"],
    ['/a?b', "'?' in path (the query must be split off first)"],
  ])
  ok(t, [['/a%23b%3F', '/a%23b%3F']])
  t.end()
})

t.test('path parameters are refused when rejectPathParameters is set', (t) => {
  refused(t, [
    ['/admin;jsessionid=1', 'path parameter (;) in path'],
    ['/admin;x=1/..', 'path parameter (;) in path'],
    ['/admin;/', 'path parameter (;) in path'],
    ['/public/..;/admin', 'path parameter (;) in path'],
    ['/admin%3Bx', 'path parameter (;) in path'],
    ['/admin%3bx', 'path parameter (;) in path'],
  ])
  ok(
    t,
    [
      ['/admin;jsessionid=1', '/admin;jsessionid=1'],
      ['/admin%3bx', '/admin%3Bx'],
      ['/a/..;/b', '/a/..;/b'],
    ],
    LAX,
  )
  t.end()
})

t.test('the attack strings never reach /admin without looking like /admin', (t) => {
  const attacks = [
    '/public/../admin/x',
    '/public/%2e%2e/admin/x',
    '/public/.%2E/admin',
    '/public/%2E%2e/admin',
    '/admin%2fx',
    '/public/..%2fadmin',
    '/public/..%5cadmin',
    '/public\\..\\admin',
    '/admin;jsessionid=1',
    '/%61dmin/x',
    '/a/%00',
    '/a/%C0%AE%C0%AE/',
    '//admin',
    '/./admin',
    '/public/%252e%252e/admin',
    '/public/%2e%2e%2fadmin',
    '/public/%2E%2E%5Cadmin',
    '/public/..;/admin',
    '/public/%u002e%u002e/admin',
    '/public/%c0%ae%c0%ae/admin',
    '/public/.../admin',
    '/public/. ./admin',
    '/public/%2e%2e%00/admin',
  ]
  for (const input of attacks) {
    const r = normalizePath(input, STRICT)
    if (!r.ok) continue
    const reachesAdmin = r.path === '/admin' || r.path.startsWith('/admin/')
    const inPublic = r.path.startsWith('/public/')
    t.ok(reachesAdmin || inPublic || r.path.startsWith('/a/'), `${input} -> ${r.path}`)
    // Whatever came out must not contain anything an upstream could decode into a traversal.
    t.notMatch(r.path, /%2e|%2f|%5c|\\|\/\.\.?(\/|$)|\/\//i, `${input} -> ${r.path} is clean`)
  }
  t.end()
})

const IDEMPOTENCE_INPUTS = [
  '/',
  '//',
  '/a/b/',
  '/a/./b/../c',
  '/public/%2e%2e/admin',
  '/%61dmin',
  '/a%20b c',
  '/caf%c3%a9',
  '/"<>"',
  '/%252e%252e',
  '/a/b/..',
  '/..',
  '/a;b',
  '/.well-known/x',
  '/%2a*',
  '/a/%2E%2E%2E/b',
  '/~user/%7euser',
  "/!$&'()*+,=:@",
  '/[v1]/{x}',
  '/%3f%23%25',
  '/a/.../..../',
  '/%F0%9F%98%80/x//y/',
]

t.test('normalization is idempotent', (t) => {
  for (const options of [STRICT, LAX]) {
    for (const input of IDEMPOTENCE_INPUTS) {
      const once = normalizePath(input, options)
      if (!once.ok) continue
      t.same(normalizePath(once.path, options), once, `${input} -> ${once.path}`)
    }
  }
  t.end()
})

// A small deterministic generator (mulberry32), so failures reproduce.
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const PIECES = [
  '/',
  '/',
  '/',
  '.',
  '..',
  '%2e',
  '%2E',
  'a',
  'b',
  'admin',
  '%61',
  '%25',
  '%2525',
  '%20',
  ' ',
  '"',
  ';',
  '%3B',
  '%C3%A9',
  '%c3%a9',
  '*',
  ':',
  '@',
  '~',
  '%7E',
  '%2f',
  '%5C',
  '\\',
  '%',
  '%G',
  '%C0%AE',
  '#',
  '\u00e9',
  '-',
  '_',
]

t.test('random paths: normal form invariants and idempotence', (t) => {
  const random = rng(20240601)
  let accepted = 0
  for (let n = 0; n < 5000; n++) {
    let input = '/'
    const length = 1 + Math.floor(random() * 10)
    for (let k = 0; k < length; k++) input += PIECES[Math.floor(random() * PIECES.length)]
    for (const options of [STRICT, LAX]) {
      const r: NormalizedPath = normalizePath(input, options)
      if (!r.ok) continue
      accepted++
      const p = r.path
      const again = normalizePath(p, options)
      if (!again.ok || again.path !== p) {
        t.fail(`not idempotent: ${show(input)} -> ${p} -> ${JSON.stringify(again)}`)
        continue
      }
      const segments = p.slice(1).split('/')
      const bad =
        !p.startsWith('/') ||
        p.includes('//') ||
        segments.some((s) => s === '.' || s === '..') ||
        /%(2[DdEe]|5[Ff]|7[Ee]|[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9])/.test(p) || // encoded unreserved left
        /%[0-9A-F]?[a-f]/.test(p) || // lower-case hex
        /[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]/.test(p) || // a character not allowed raw
        (options.rejectPathParameters && p.includes(';'))
      if (bad) t.fail(`not in normal form: ${show(input)} -> ${p}`)
    }
  }
  t.ok(accepted > 1000, `enough random inputs were accepted (${accepted})`)
  t.end()
})

// Issue 16 item 4: paths an upstream may decode further. Families, not single strings.

/** Every spelling of `c` as one escape: upper, lower and mixed case hex. */
function escapes(c: string): string[] {
  const hex = c.charCodeAt(0).toString(16).padStart(2, '0')
  const out = new Set<string>()
  for (const hi of new Set([hex[0]!.toLowerCase(), hex[0]!.toUpperCase()]))
    for (const lo of new Set([hex[1]!.toLowerCase(), hex[1]!.toUpperCase()])) out.add(`%${hi}${lo}`)
  return [...out]
}

/**
 * Every double encoding of `c`: `%25` (any case) followed by its escape's two hex digits, each
 * raw or itself escaped (any case), and the triple encodings `%2525…`.
 */
function doubleEncodings(c: string): string[] {
  const out = new Set<string>()
  const digitForms = (d: string) => [d, ...escapes(d)]
  for (const once of escapes(c)) {
    for (const pct of escapes('%')) {
      for (const hi of digitForms(once[1]!)) for (const lo of digitForms(once[2]!)) out.add(`${pct}${hi}${lo}`)
      out.add(`${pct}25${once.slice(1)}`) // decoded three times
    }
  }
  return [...out]
}

t.test('item 4: every double encoding of dot, slash and backslash is marked ambiguous, never decoded', (t) => {
  let n = 0
  for (const c of ['.', '/', '\\']) {
    for (const enc of doubleEncodings(c)) {
      for (const input of [`/public/${enc}${enc}/admin`, `/public/${enc}`, `/public/x${enc}y`, `/${enc}/a`]) {
        const r = normalizePath(input, STRICT)
        n++
        if (!r.ok || r.ambiguous !== DOUBLE) {
          t.fail(`${show(input)} -> ${JSON.stringify(r)}`)
          continue
        }
        // Once decoded by the gateway, never twice: the path still holds `%25`.
        if (!r.path.includes('%25')) t.fail(`${show(input)} was decoded to ${r.path}`)
      }
    }
  }
  t.ok(n >= 120, `${n} double encodings checked`)
  t.end()
})

t.test('item 4: a %25 that a second decoding leaves alone is not ambiguous', (t) => {
  for (const input of ['/a/%25', '/a/%25zz', '/a/%25g1', '/a/100%25', '/a/%25%20', '/a/%25-', '/a/%25u00']) {
    const r = normalizePath(input, STRICT)
    t.ok(r.ok && r.ambiguous === undefined, `${show(input)} -> ${JSON.stringify(r)}`)
  }
  t.end()
})

/** The code points whose NFKC form contains `.`, `/` or `\\`, found by scanning all of them. */
function nfkcDotOrSlash(): Set<number> {
  const found = new Set<number>()
  for (let c = 0x80; c <= 0x10ffff; c++) {
    if (c >= 0xd800 && c <= 0xdfff) continue
    const n = String.fromCodePoint(c).normalize('NFKC')
    if (n.includes('.') || n.includes('/') || n.includes('\\')) found.add(c)
  }
  return found
}

function percentUtf8(s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join('')
}

t.test('item 4: every code point whose NFKC form holds a dot, slash or backslash is marked ambiguous, encoded; refused raw', (t) => {
  const family = nfkcDotOrSlash()
  t.ok(family.size >= 38, `${family.size} code points, the leaders and fullwidth forms among them`)
  for (const c of [0x2024, 0x2025, 0xff0e, 0xff0f, 0xff3c]) t.ok(family.has(c), `U+${c.toString(16)} is in the family`)
  for (const c of family) {
    const ch = String.fromCodePoint(c)
    for (const encoded of [percentUtf8(ch), percentUtf8(ch).toLowerCase()]) {
      const r = normalizePath(`/public/${encoded}${encoded}/admin`, STRICT)
      if (!r.ok || r.ambiguous !== NFKC) t.fail(`U+${c.toString(16)} ${encoded} -> ${JSON.stringify(r)}`)
    }
    // Raw, Node hands the bytes over as latin1 characters: refused whatever the route.
    const raw = normalizePath(`/public/${Buffer.from(ch, 'utf8').toString('latin1')}/admin`, STRICT)
    if (raw.ok) t.fail(`raw U+${c.toString(16)} accepted`)
  }
  // Its neighbours, and other non-ASCII text, are not.
  for (const c of [0x2023, 0x2027, 0xff0d, 0xff10, 0xe9, 0x20ac, 0x1f600]) {
    if (family.has(c)) continue
    const r = normalizePath(`/a/${percentUtf8(String.fromCodePoint(c))}`, STRICT)
    t.ok(r.ok && r.ambiguous === undefined, `U+${c.toString(16)} is plain text`)
  }
  t.end()
})
