import t from 'tap'
import { compileHostPattern, hostCovers, hostFromHeader, type HostPattern } from '../../src/routing/host_pattern.js'
import * as table from '../../src/routing/route_table.js'

/** A pattern the test writes as valid; an invalid one throws its problem, failing the test. */
function hostPattern(source: string): HostPattern {
  return compileHostPattern(source, [], (_at, message) => {
    throw new Error(message)
  })!
}

t.test('route_table re-exports the host functions', (t) => {
  t.equal(table.compileHostPattern, compileHostPattern)
  t.equal(table.hostFromHeader, hostFromHeader)
  t.end()
})

t.test('hostFromHeader: lower case, no port, no trailing dot', (t) => {
  const cases: Array<[string | undefined, string]> = [
    [undefined, ''],
    ['', ''],
    ['example.com', 'example.com'],
    ['Example.COM', 'example.com'],
    ['example.com:8080', 'example.com'],
    ['example.com:', 'example.com'], // RFC 3986 §3.2.3: the port may be empty
    ['EXAMPLE.com.:443', 'example.com'],
    ['example.com.', 'example.com'],
    ['10.0.0.1:80', '10.0.0.1'],
    ['example.com:65535', 'example.com'],
    ['example.com:0', 'example.com'],
    ['[::1]', '[::1]'],
    ['[::1]:8080', '[::1]'],
    ['[2001:DB8::1]:443', '[2001:db8::1]'],
    ['[::ffff:10.0.0.1]', '[::ffff:10.0.0.1]'],
    ['my_host-1', 'my_host-1'],
  ]
  for (const [header, host] of cases) t.equal(hostFromHeader(header), host, String(header))
  t.end()
})

t.test('hostFromHeader: an invalid Host header gives the empty host', (t) => {
  const invalid = [
    'example.com:80:80',
    'example.com:http',
    'example.com:123456',
    'example.com:65536',
    'example.com:99999',
    'example.com, evil.com',
    'example.com,example.com',
    ':8080',
    '::1',
    '[::1',
    '[::1]x',
    '[::1]:8x',
    '[]',
    '[fe80::1%25eth0]',
    '[v1.x]',
    '[::g]',
    '[1234]',
    '[1.2.3.4]',
    '[a:b]',
    'a..b',
    '.example.com',
    '..',
    '.',
    'exa mple.com',
    'user@example.com',
    'example.com/x',
    'ex%41mple.com',
    'caf\u00e9.com',
    'a'.repeat(64) + '.com',
    'a.'.repeat(127) + 'aa',
    '*.example.com',
  ]
  for (const header of invalid) t.equal(hostFromHeader(header), '', JSON.stringify(header).slice(0, 40))
  t.equal(hostFromHeader('a'.repeat(63) + '.com'), 'a'.repeat(63) + '.com', 'a 63-character label is fine')
  t.end()
})

t.test('exact host patterns are case-insensitive and port-free', (t) => {
  const p = hostPattern('API.Example.com')
  t.equal(p.source, 'API.Example.com')
  t.ok(p.matches('api.example.com'))
  t.notOk(p.matches('x.api.example.com'))
  t.notOk(p.matches('example.com'))
  t.notOk(p.matches('api.example.co'))
  t.ok(hostPattern('example.com.').matches('example.com'), 'a trailing dot in the pattern is dropped')
  t.ok(hostPattern('[::1]').matches('[::1]'))
  t.ok(hostPattern('[2001:DB8::1]').matches('[2001:db8::1]'))
  t.ok(hostPattern('10.0.0.1').matches('10.0.0.1'))
  t.end()
})

t.test('*.example.com matches one or more labels before example.com, not example.com', (t) => {
  const p = hostPattern('*.Example.com')
  for (const host of ['a.example.com', 'a.b.example.com', 'xn--caf-dma.example.com']) t.ok(p.matches(host), host)
  for (const host of ['example.com', '.example.com', 'aexample.com', 'example.com.evil', 'a.example.co', '']) t.notOk(p.matches(host), host)
  t.ok(p.matches(hostFromHeader('A.EXAMPLE.COM.:8443')))
  t.end()
})

t.test('invalid host patterns are refused with a message', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /not a valid host/],
    ['*', /wildcard must be the whole first label/],
    ['*.', /wildcard must be the whole first label/],
    ['*.*.example.com', /expected "\*\." followed by a host name/],
    ['a.*.example.com', /wildcard must be the whole first label/],
    ['*example.com', /wildcard must be the whole first label/],
    ['api*.example.com', /wildcard must be the whole first label/],
    ['example.com:8080', /no port/],
    ['::1', /no port/],
    ['[::1]:80', /not a valid host/],
    ['a..b', /not a valid host/],
    ['exa mple.com', /not a valid host/],
    ['*.[::1]', /expected "\*\." followed by a host name/],
  ]
  for (const [source, message] of cases) {
    const problems: Array<[unknown, string]> = []
    t.equal(
      compileHostPattern(source, ['routes', 0, 'host'], (at, m) => problems.push([at, m])),
      undefined,
      JSON.stringify(source),
    )
    t.match(problems, [[['routes', 0, 'host'], message]], 'one problem, at the place given')
  }
  t.end()
})

t.test('hostCovers', (t) => {
  const covers = (a: string, b: string) => hostCovers(hostPattern(a), hostPattern(b))
  t.ok(covers('a.com', 'A.com'))
  t.notOk(covers('a.com', 'b.com'))
  t.notOk(covers('a.com', '*.a.com'))
  t.ok(covers('*.a.com', 'x.a.com'))
  t.ok(covers('*.a.com', 'x.y.a.com'))
  t.notOk(covers('*.a.com', 'a.com'))
  t.notOk(covers('*.a.com', 'xa.com'))
  t.ok(covers('*.a.com', '*.a.com'))
  t.ok(covers('*.a.com', '*.b.a.com'))
  t.notOk(covers('*.b.a.com', '*.a.com'))
  t.notOk(covers('*.a.com', '*.ba.com'))
  const foreign = { source: 'a.com', matches: () => true }
  t.notOk(hostCovers(foreign, hostPattern('a.com')), 'a pattern it did not compile never covers')
  t.notOk(hostCovers(hostPattern('*.a.com'), foreign))
  t.end()
})
