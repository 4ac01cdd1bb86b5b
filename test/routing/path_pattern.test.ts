import t from 'tap'
import { compilePathPattern, literalPrefix, patternCovers, type PathPattern } from '../../src/routing/path_pattern.js'

/** A pattern the test writes as valid; an invalid one throws its problem, failing the test. */
function pathPattern(source: string): PathPattern {
  return compilePathPattern(source, [], (_at, message) => {
    throw new Error(message)
  })!
}

function check(t: Pick<typeof import('tap').default, 'ok' | 'notOk' | 'equal'>, pattern: string, yes: string[], no: string[]): void {
  const p = pathPattern(pattern)
  t.equal(p.source, pattern)
  for (const path of yes) t.ok(p.matches(path), `${pattern} matches ${path}`)
  for (const path of no) t.notOk(p.matches(path), `${pattern} does not match ${path}`)
}

t.test('exact patterns', (t) => {
  check(t, '/health', ['/health'], ['/health/', '/healthz', '/Health', '/', '/health/x', '/x/health', ''])
  check(t, '/a/b/', ['/a/b/'], ['/a/b', '/a/b/c', '/a/'])
  check(t, '/%C3%A9', ['/%C3%A9'], ['/%c3%a9', '/'])
  t.end()
})

t.test('the root', (t) => {
  check(t, '/', ['/'], ['/a', '//', ''])
  check(t, '/*', ['/a', '/abc'], ['/', '/a/', '/a/b', '', 'ab'])
  check(t, '/**', ['/', '/a', '/a/', '/a/b/c', '/a/b/'], ['', 'a'])
  check(t, '/*/', ['/a/'], ['/', '/a', '/a/b/'])
  t.end()
})

t.test('* matches exactly one non-empty segment', (t) => {
  check(t, '/api/orders/*', ['/api/orders/1', '/api/orders/abc'], ['/api/orders', '/api/orders/', '/api/orders/1/', '/api/orders/1/items'])
  check(t, '/api/*/items', ['/api/1/items'], ['/api/items', '/api//items', '/api/1/2/items', '/api/1/items/'])
  check(t, '/*/*', ['/a/b'], ['/a', '/a/', '/a/b/', '/a/b/c'])
  t.end()
})

t.test('** matches zero or more segments, empty ones included', (t) => {
  check(t, '/api/**', ['/api', '/api/', '/api/a', '/api/a/b', '/api/a/b/'], ['/apix', '/apix/a', '/ap', '/', '/x/api', '/API'])
  check(t, '/a/b/**', ['/a/b', '/a/b/', '/a/b/c'], ['/a', '/a/', '/a/bc', '/a/bc/d'])
  check(t, '/a/**/b', ['/a/b', '/a/x/b', '/a/x/y/b'], ['/a', '/a/b/', '/a/x', '/b', '/a/bb'])
  check(t, '/**/b', ['/b', '/a/b', '/a/a/b'], ['/', '/b/', '/a/b/c', 'xb', 'b'])
  check(t, '/*/**', ['/a', '/a/', '/a/b/c'], ['/'])
  check(t, '/**/*', ['/a', '/a/b'], ['/', '/a/', '/a/b/'])
  check(t, '/a/**/', ['/a/', '/a/b/', '/a/b/c/'], ['/a', '/a/b'])
  check(t, '/a/**/b/**/c', ['/a/b/c', '/a/x/b/y/c', '/a/b/b/c', '/a/b/x/b/c', '/a/x/b/x/b/c'], ['/a/c', '/a/b', '/a/c/b', '/a/b/c/d'])
  t.end()
})

t.test('invalid patterns are refused with a message', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /must start with \//],
    ['api/**', /must start with \//],
    ['*', /must start with \//],
    ['/a/./b', /not in normal form; write it as "\/a\/b"/],
    ['/a//b', /not in normal form; write it as "\/a\/b"/],
    ['/a/../b', /not in normal form/],
    ['/a/..', /not in normal form/],
    ['/%61pi', /not in normal form; write it as "\/api"/],
    ['/caf%c3%a9', /not in normal form; write it as "\/caf%C3%A9"/],
    ['/a b', /not in normal form; write it as "\/a%20b"/],
    ['/a%2Fb', /encoded slash/],
    ['/a\\b', /backslash/],
    ['/a%', /malformed/],
    ['/a*b', /wildcards must be a whole segment/],
    ['/a*', /wildcards must be a whole segment/],
    ['/*a/b', /wildcards must be a whole segment/],
    ['/a/***', /wildcards must be a whole segment/],
    ['/**/**', /"\*\*\/\*\*" is the same as "\*\*"/],
    ['/a/**/**/b', /"\*\*\/\*\*"/],
  ]
  for (const [source, message] of cases) {
    const problems: Array<[unknown, string]> = []
    t.equal(
      compilePathPattern(source, ['routes', 3, 'path'], (at, m) => problems.push([at, m])),
      undefined,
      JSON.stringify(source),
    )
    t.match(problems, [[['routes', 3, 'path'], message]], 'one problem, at the place given')
  }
  // ** twice, not consecutive, is fine; so is ; (whether requests may use it is another option).
  t.doesNotThrow(() => pathPattern('/a/**/b/**'))
  t.doesNotThrow(() => pathPattern('/a;v=1/**'))
  t.end()
})

t.test('a pattern with a literal %2A does not act as a wildcard', (t) => {
  check(t, '/a/%2A', ['/a/%2A'], ['/a/b', '/a/*'])
  t.end()
})

t.test('literalPrefix', (t) => {
  t.same(literalPrefix(pathPattern('/api/v1/**')), ['api', 'v1'])
  t.same(literalPrefix(pathPattern('/api/*/x')), ['api'])
  t.same(literalPrefix(pathPattern('/api/v1')), ['api', 'v1'])
  t.same(literalPrefix(pathPattern('/')), [''])
  t.same(literalPrefix(pathPattern('/**')), [])
  t.same(literalPrefix({ source: '/api', matches: () => true }), [], 'a foreign pattern is never indexed')
  t.end()
})

// --- properties, checked against a plain recursive matcher over split segments ---

function reference(pattern: string, path: string): boolean {
  if (!path.startsWith('/')) return false
  const ps = pattern.slice(1).split('/')
  const ss = path.slice(1).split('/')
  const go = (i: number, j: number): boolean => {
    if (i === ps.length) return j === ss.length
    if (ps[i] === '**') {
      for (let k = j; k <= ss.length; k++) if (go(i + 1, k)) return true
      return false
    }
    if (j === ss.length) return false
    const ok = ps[i] === '*' ? ss[j] !== '' : ss[j] === ps[i]
    return ok && go(i + 1, j + 1)
  }
  return go(0, 0)
}

/** Every pattern of up to `max` segments over the given tokens that compiles. */
function patterns(tokens: string[], max: number): PathPattern[] {
  const out: PathPattern[] = []
  let layer = ['']
  for (let n = 1; n <= max; n++) {
    const next: string[] = []
    for (const prefix of layer) {
      for (const tok of tokens) {
        const source = prefix + '/' + tok
        next.push(source)
        try {
          out.push(pathPattern(source))
        } catch {
          // not a valid pattern: skipped
        }
      }
    }
    layer = next
  }
  return out
}

/** Every normalized path of up to `max` segments over the given non-empty segments. */
function paths(segments: string[], max: number): string[] {
  const out = ['/']
  let layer = ['']
  for (let n = 1; n <= max; n++) {
    const next: string[] = []
    for (const prefix of layer) {
      for (const s of segments) {
        const p = prefix + '/' + s
        next.push(p)
        out.push(p, p + '/')
      }
    }
    layer = next
  }
  return out
}

const TOKENS = ['a', 'b', '*', '**', '']
const ALL_PATTERNS = patterns(TOKENS, 4)
const ALL_PATHS = paths(['a', 'b', 'c'], 6)

t.test('the compiled matchers agree with the reference on every small pattern and path', (t) => {
  let failures = 0
  for (const p of ALL_PATTERNS) {
    for (const path of ALL_PATHS) {
      if (p.matches(path) !== reference(p.source, path) && failures++ < 10) {
        t.fail(`${p.source} on ${path}: got ${p.matches(path)}`)
      }
    }
  }
  t.equal(failures, 0, `${ALL_PATTERNS.length} patterns x ${ALL_PATHS.length} paths`)
  t.end()
})

t.test('literal segments are compared whole, with prefixes and lengths that nearly match', (t) => {
  const p = pathPattern('/ab/*/cd/**/ef')
  for (const path of ['/ab/x/cd/ef', '/ab/x/cd/y/ef', '/ab/x/cd/ef/ef']) t.ok(p.matches(path), path)
  for (const path of ['/abc/x/cd/ef', '/a/x/cd/ef', '/ab/x/c/ef', '/ab/x/cde/ef', '/ab/x/cd/efg', '/ab/x/cd/e', '/ab/x/cd/ef/']) t.notOk(p.matches(path), path)
  t.end()
})

t.test('patternCovers on examples', (t) => {
  const covers = (a: string, b: string) => patternCovers(pathPattern(a), pathPattern(b))
  const yes: Array<[string, string]> = [
    ['/**', '/'],
    ['/**', '/anything/**'],
    ['/api/**', '/api/orders/*'],
    ['/api/**', '/api'],
    ['/api/**', '/api/**'],
    ['/api/*', '/api/x'],
    ['/*/**', '/a/**/b'],
    ['/**/b', '/a/**/b'],
    ['/a/**', '/a/**/b/**'],
    ['/a/**/c', '/a/b/**/c'],
    ['/*/**', '/**/a'], // every normalized path ending in /a has a non-empty first segment
    ['/**/*', '/a/**/b'],
  ]
  const no: Array<[string, string]> = [
    ['/api/*', '/api/**'],
    ['/api/**', '/**'],
    ['/*', '/'],
    ['/*/**', '/**'],
    ['/a/b', '/a/b/'],
    ['/a/**/b', '/a/**'],
    ['/api/*', '/api/'],
    ['/**/*', '/a/**'],
    ['/a/*/c', '/a/**/c'],
    ['/x', '/y'],
  ]
  for (const [a, b] of yes) t.ok(covers(a, b), `${a} covers ${b}`)
  for (const [a, b] of no) t.notOk(covers(a, b), `${a} does not cover ${b}`)
  t.end()
})

t.test('patternCovers is exact on every pair of small patterns', (t) => {
  // Up to three segments, exhaustively; then random pairs of up to four.
  const small = ALL_PATTERNS.filter((p) => p.source.split('/').length <= 4)
  const matched = new Map<PathPattern, boolean[]>()
  for (const p of ALL_PATTERNS)
    matched.set(
      p,
      ALL_PATHS.map((path) => p.matches(path)),
    )
  const expected = (a: PathPattern, b: PathPattern) => {
    const ma = matched.get(a)!
    return matched.get(b)!.every((m, i) => !m || ma[i])
  }
  let failures = 0
  let pairs = 0
  const verify = (a: PathPattern, b: PathPattern) => {
    pairs++
    if (patternCovers(a, b) !== expected(a, b) && failures++ < 10) t.fail(`patternCovers(${a.source}, ${b.source}) = ${!expected(a, b)}`)
  }
  for (const a of small) for (const b of small) verify(a, b)
  let seed = 7
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % ALL_PATTERNS.length
  for (let k = 0; k < 20000; k++) verify(ALL_PATTERNS[next()]!, ALL_PATTERNS[next()]!)
  t.equal(failures, 0, `${pairs} pairs`)
  t.end()
})

t.test('patternCovers accepts patterns it did not compile by recompiling their source', (t) => {
  const foreign: PathPattern = { source: '/api/**', matches: () => false }
  t.ok(patternCovers(foreign, pathPattern('/api/x')))
  t.notOk(patternCovers(pathPattern('/api/x'), foreign))
  t.end()
})
