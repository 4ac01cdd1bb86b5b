import t from 'tap'
import { hostCovers } from '../../src/routing/host_pattern.js'
import {
  compileHostPattern,
  compilePathPattern,
  patternCovers,
  RouteTable,
  type HostPattern,
  type PathPattern,
  type RouteCandidate,
} from '../../src/routing/route_table.js'

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

interface Spec {
  path: string
  methods?: string[]
  host?: string
}

function route(spec: Spec, value = spec.path): RouteCandidate<string> {
  return {
    path: pathPattern(spec.path),
    methods: spec.methods ? new Set(spec.methods) : null,
    host: spec.host ? hostPattern(spec.host) : null,
    value,
  }
}

function tableOf(specs: Spec[]): RouteTable<string> {
  return new RouteTable(specs.map((s, i) => route(s, `r${i}`)))
}

t.test('the first matching route wins', (t) => {
  const routes = tableOf([{ path: '/api/admin/**', methods: ['DELETE'] }, { path: '/api/**' }, { path: '/api/admin/**' }, { path: '/**' }])
  t.same(routes.match('DELETE', '', '/api/admin/x'), { index: 0, value: 'r0' })
  t.same(routes.match('GET', '', '/api/admin/x'), { index: 1, value: 'r1' })
  t.same(routes.match('GET', '', '/other'), { index: 3, value: 'r3' })
  t.same(routes.match('GET', '', '/'), { index: 3, value: 'r3' })
  t.equal(routes.size, 4)
  t.end()
})

t.test('no match gives null', (t) => {
  const routes = tableOf([
    { path: '/api/**', methods: ['GET'] },
    { path: '/health', host: 'a.com' },
  ])
  t.equal(routes.match('GET', '', '/apix'), null)
  t.equal(routes.match('POST', '', '/api/x'), null)
  t.equal(routes.match('GET', 'b.com', '/health'), null)
  t.equal(routes.match('GET', '', '/'), null)
  t.equal(new RouteTable([]).match('GET', '', '/'), null)
  t.end()
})

t.test('methods: null is any method, otherwise exact; GET does not imply HEAD', (t) => {
  const routes = tableOf([{ path: '/r', methods: ['GET', 'POST'] }, { path: '/any' }])
  t.ok(routes.match('GET', '', '/r'))
  t.ok(routes.match('POST', '', '/r'))
  t.equal(routes.match('HEAD', '', '/r'), null)
  t.equal(routes.match('get', '', '/r'), null, 'methods are case-sensitive (RFC 9110 §9.1)')
  t.equal(routes.match('PUT', '', '/r'), null)
  for (const m of ['GET', 'HEAD', 'PURGE', 'X']) t.ok(routes.match(m, '', '/any'), m)
  t.end()
})

t.test('hosts: null is any host, otherwise the pattern decides', (t) => {
  const routes = tableOf([{ path: '/**', host: 'admin.example.com' }, { path: '/**', host: '*.example.com' }, { path: '/**' }])
  t.equal(routes.match('GET', 'admin.example.com', '/x')?.index, 0)
  t.equal(routes.match('GET', 'api.example.com', '/x')?.index, 1)
  t.equal(routes.match('GET', 'example.com', '/x')?.index, 2)
  t.equal(routes.match('GET', '', '/x')?.index, 2)
  t.end()
})

t.test('a match allocates no result: the same frozen object each time', (t) => {
  const routes = tableOf([{ path: '/a' }])
  const first = routes.match('GET', '', '/a')
  t.equal(routes.match('GET', '', '/a'), first)
  t.ok(Object.isFrozen(first))
  t.end()
})

t.test('mismatch says why a route does not match, checking path, method, host in that order', (t) => {
  const routes = tableOf([{ path: '/api/**', methods: ['GET'], host: 'a.com' }])
  t.equal(routes.mismatch(0, 'GET', 'a.com', '/api/x'), null)
  t.equal(routes.mismatch(0, 'POST', 'b.com', '/other'), 'path')
  t.equal(routes.mismatch(0, 'POST', 'b.com', '/api/x'), 'method')
  t.equal(routes.mismatch(0, 'GET', 'b.com', '/api/x'), 'host')
  t.throws(() => routes.mismatch(1, 'GET', 'a.com', '/api'), RangeError)
  t.end()
})

t.test('shadowedBy finds routes an earlier route covers in path, methods and host', (t) => {
  const routes = tableOf([
    { path: '/api/**' }, // 0
    { path: '/api/orders/*' }, // 1 shadowed by 0
    { path: '/admin/**', methods: ['GET'] }, // 2
    { path: '/admin/x', methods: ['GET'] }, // 3 shadowed by 2
    { path: '/admin/y', methods: ['GET', 'POST'] }, // 4 not: POST gets through
    { path: '/admin/z' }, // 5 not: any method
    { path: '/h/**', host: '*.example.com' }, // 6
    { path: '/h/a', host: 'a.example.com' }, // 7 shadowed by 6
    { path: '/h/b', host: 'example.com' }, // 8 not: example.com is not *.example.com
    { path: '/h/c' }, // 9 not: any host
    { path: '/**', methods: ['GET'] }, // 10
    { path: '/h/c', methods: ['GET'] }, // 11 shadowed by 9 (the first that covers)
    { path: '/zzz', methods: ['POST'], host: 'q.com' }, // 12 not
  ])
  t.same(routes.shadowedBy(), [
    { index: 1, by: 0 },
    { index: 3, by: 2 },
    { index: 7, by: 6 },
    { index: 11, by: 9 },
  ])
  t.end()
})

t.test('shadowedBy: a narrower path, method or host earlier does not shadow', (t) => {
  t.same(tableOf([{ path: '/a/*' }, { path: '/a/**' }]).shadowedBy(), [])
  t.same(tableOf([{ path: '/a/**', methods: ['GET'] }, { path: '/a/**' }]).shadowedBy(), [])
  t.same(tableOf([{ path: '/a/**', host: 'a.com' }, { path: '/a/**' }]).shadowedBy(), [])
  t.same(
    tableOf([
      { path: '/a/**', host: 'a.com' },
      { path: '/a/**', host: '*.a.com' },
    ]).shadowedBy(),
    [],
  )
  t.same(tableOf([{ path: '/a/**' }, { path: '/a/**' }]).shadowedBy(), [{ index: 1, by: 0 }], 'a duplicate is shadowed')
  t.end()
})

t.test('the first-segment index keeps first-match-wins priority', (t) => {
  // Wildcard-first routes interleaved with literal-first ones: the index must not let a later
  // bucketed route beat an earlier wildcard one, or the other way round.
  const routes = tableOf([
    { path: '/api/public/**' }, // 0
    { path: '/*/admin/**' }, // 1
    { path: '/api/**' }, // 2
    { path: '/**', methods: ['DELETE'] }, // 3
    { path: '/static/**' }, // 4
    { path: '/' }, // 5
    { path: '/**' }, // 6
  ])
  t.equal(routes.match('GET', '', '/api/public/x')?.index, 0)
  t.equal(routes.match('GET', '', '/api/admin/x')?.index, 1)
  t.equal(routes.match('GET', '', '/static/admin/x')?.index, 1)
  t.equal(routes.match('GET', '', '/api/x')?.index, 2)
  t.equal(routes.match('DELETE', '', '/api/x')?.index, 2)
  t.equal(routes.match('DELETE', '', '/static/x')?.index, 3)
  t.equal(routes.match('GET', '', '/static/x')?.index, 4)
  t.equal(routes.match('GET', '', '/')?.index, 5)
  t.equal(routes.match('DELETE', '', '/')?.index, 3)
  t.equal(routes.match('GET', '', '/nothing/here')?.index, 6)
  t.equal(routes.match('GET', '', '/apis')?.index, 6, 'a first segment that merely starts like a bucket key')
  t.end()
})

t.test('the index goes deeper than the first segment and keeps priority at every level', (t) => {
  const routes = tableOf([
    { path: '/api/v1/admin/**' }, // 0
    { path: '/api/*/x' }, // 1
    { path: '/api/v1/**' }, // 2
    { path: '/api/v1' }, // 3: shadowed by 2 for GET, still indexed
    { path: '/**/x' }, // 4
    { path: '/api/**' }, // 5
  ])
  t.equal(routes.match('GET', '', '/api/v1/admin/x')?.index, 0)
  t.equal(routes.match('GET', '', '/api/v1/x')?.index, 1, 'a wildcard at the second level beats a later deeper literal')
  t.equal(routes.match('GET', '', '/api/v2/x')?.index, 1)
  t.equal(routes.match('GET', '', '/api/v1/y')?.index, 2)
  t.equal(routes.match('GET', '', '/api/v1')?.index, 2)
  t.equal(routes.match('GET', '', '/api/v1/')?.index, 2)
  t.equal(routes.match('GET', '', '/api/v2/y/x')?.index, 4)
  t.equal(routes.match('GET', '', '/api/v2/y')?.index, 5)
  t.equal(routes.match('GET', '', '/api')?.index, 5)
  t.equal(routes.match('GET', '', '/other'), null)
  // 500 routes under one first segment: the request still finds the last one.
  const many = tableOf([...Array.from({ length: 499 }, (_, i) => ({ path: `/api/svc-${i}/**` })), { path: '/api/**' }])
  t.equal(many.match('GET', '', '/api/items')?.index, 499)
  t.equal(many.match('GET', '', '/api/svc-498/a')?.index, 498)
  t.end()
})

t.test('a pattern object from elsewhere is checked on every request, never bucketed', (t) => {
  const foreign: PathPattern = { source: '/x', matches: (p) => p.startsWith('/y') }
  const routes = new RouteTable([{ path: foreign, methods: null, host: null, value: 'f' }, route({ path: '/y' })])
  t.equal(routes.match('GET', '', '/y')?.index, 0)
  t.end()
})

t.test('the indexed match agrees with a linear scan on random tables', (t) => {
  let seed = 42
  const pick = <X>(xs: X[]): X => xs[(seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % xs.length]!
  const segments = ['a', 'b', 'c', '*', '**']
  const paths = ['/', '/a', '/b', '/c', '/d', '/a/', '/a/b', '/b/a', '/a/a/a', '/c/b/', '/d/a', '/a/b/c/d']
  const methods = [null, ['GET'], ['POST'], ['GET', 'POST']]
  const hosts = [null, 'a.com', '*.a.com']
  let checked = 0
  for (let n = 0; n < 300; n++) {
    const candidates: RouteCandidate<number>[] = []
    const count = 1 + (n % 25)
    while (candidates.length < count) {
      let source = ''
      const length = 1 + (seed % 3)
      for (let k = 0; k < length; k++) source += '/' + pick(segments)
      let path: PathPattern
      try {
        path = pathPattern(source)
      } catch {
        continue
      }
      const m = pick(methods)
      const h = pick(hosts)
      candidates.push({ path, methods: m && new Set(m), host: h === null ? null : hostPattern(h), value: candidates.length })
    }
    const routes = new RouteTable(candidates)
    for (const path of paths) {
      for (const method of ['GET', 'POST']) {
        for (const host of ['a.com', 'b.a.com', 'c.com']) {
          const linear = candidates.findIndex(
            (c) => c.path.matches(path) && (c.methods === null || c.methods.has(method)) && (c.host === null || c.host.matches(host)),
          )
          const got = routes.match(method, host, path)
          checked++
          if ((got?.index ?? -1) !== linear) {
            t.fail(`table ${candidates.map((c) => c.path.source).join(' ')}: ${method} ${host} ${path} got ${got?.index} want ${linear}`)
            t.end()
            return
          }
        }
      }
    }
  }
  t.pass(`${checked} requests agree`)
  t.end()
})

/** shadowedBy as it was: every later route against every earlier one, the first that covers. */
function shadowedByEveryPair<T>(candidates: RouteCandidate<T>[]): Array<{ index: number; by: number }> {
  const out: Array<{ index: number; by: number }> = []
  candidates.forEach((b, j) => {
    for (let i = 0; i < j; i++) {
      const a = candidates[i]!
      const methods = a.methods === null || (b.methods !== null && [...b.methods].every((m) => a.methods!.has(m)))
      const host = a.host === null || (b.host !== null && hostCovers(a.host, b.host))
      if (methods && host && patternCovers(a.path, b.path)) {
        out.push({ index: j, by: i })
        break
      }
    }
  })
  return out
}

t.test('shadowedBy, comparing only routes on one literal-prefix branch, agrees with comparing every pair on random tables', (t) => {
  let seed = 7
  const pick = <X>(xs: X[]): X => xs[(seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % xs.length]!
  const segments = ['a', 'b', '', '*', '**', 'a', 'b']
  const methods = [null, ['GET'], ['POST'], ['GET', 'POST']]
  const hosts = [null, 'a.com', '*.a.com']
  let shadowed = 0
  for (let n = 0; n < 400; n++) {
    const candidates: RouteCandidate<number>[] = []
    const count = 1 + (n % 30)
    while (candidates.length < count) {
      let source = ''
      const length = 1 + (seed % 4)
      for (let k = 0; k < length; k++) source += '/' + pick(segments)
      let path: PathPattern
      try {
        path = pathPattern(source)
      } catch {
        continue
      }
      const m = pick(methods)
      const h = pick(hosts)
      candidates.push({ path, methods: m && new Set(m), host: h === null ? null : hostPattern(h), value: candidates.length })
    }
    const want = shadowedByEveryPair(candidates)
    const got = new RouteTable(candidates).shadowedBy()
    shadowed += want.length
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      t.same(got, want, `table ${candidates.map((c) => c.path.source).join(' ')}`)
      t.end()
      return
    }
  }
  t.ok(shadowed > 100, `${shadowed} shadowed routes found alike`)
  t.end()
})

t.test('shadowedBy compares a route only with the earlier routes on its literal-prefix branch', (t) => {
  // Counted through a foreign pattern's source getter, read once per comparison of paths.
  let reads = 0
  const counted = (source: string): PathPattern => {
    const inner = pathPattern(source)
    return {
      get source() {
        reads++
        return source
      },
      matches: (p) => inner.matches(p),
    }
  }
  const candidates: RouteCandidate<number>[] = []
  for (let i = 0; i < 500; i++) candidates.push({ path: counted(`/svc${i}/**`), methods: null, host: null, value: i })
  reads = 0
  t.same(new RouteTable(candidates).shadowedBy(), [])
  // Every pair would be 125,000 comparisons; one prefix read per route is 500.
  t.ok(reads <= 2 * candidates.length, `${reads} pattern reads for ${candidates.length} routes`)
  t.end()
})
