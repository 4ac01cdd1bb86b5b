// Route names: the route label in metrics and logs must not depend on where a route sits in the file.
import t from 'tap'
import { createLogger } from '../../src/log.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicySource } from '../../src/policy/load.js'
import { PolicyError, formatProblem } from '../../src/policy/problems.js'
import { routeNames } from '../../src/policy/route_names.js'
import type { RouteDocument } from '../../src/policy/schema.js'

const HEAD = `version: 1
listen: { port: 8080 }
upstreams:
  orders: { url: "http://127.0.0.1:3001" }
routes:
`

function namesOf(routes: string): string[] | string[][] {
  try {
    const policy = compilePolicy(parsePolicySource('policy.yaml', HEAD + routes, {}), createLogger('silent'))
    return policy.routes.values().map((r) => r.name)
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    return [err.problems.map(formatProblem)]
  }
}

t.test('a route is labelled by its name:, else by its methods, host and path', async (t) => {
  t.same(
    namesOf(`  - { name: orders-admin, path: /admin/**, upstream: orders, auth: none }
  - { path: /api/**, methods: [POST, GET], upstream: orders, auth: none }
  - { path: /api/**, host: Internal.Example.com, upstream: orders, auth: none }
  - { path: /api/**, upstream: orders, auth: none }
`),
    ['orders-admin', 'GET,POST /api/**', 'internal.example.com/api/**', '/api/**'],
  )
})

t.test('a route inserted at the top renames no other route', async (t) => {
  const rest = `  - { path: /api/**, methods: [GET], upstream: orders, auth: none }
  - { path: /api/**, upstream: orders, auth: none }
`
  const before = namesOf(rest)
  const after = namesOf(`  - { path: /health, upstream: orders, auth: none }\n${rest}`)
  t.same(after.slice(1), before)
})

t.test('names are unique and well formed, with the place of the mistake', async (t) => {
  t.same(
    namesOf(`  - { name: api, path: /a/**, upstream: orders, auth: none }
  - { name: api, path: /b/**, upstream: orders, auth: none }
`),
    [['policy.yaml:7:13 route name "api" is already used by routes[0]']],
  )
  t.same(namesOf('  - { name: "Orders API", path: /c/**, upstream: orders, auth: none }\n'), [
    [
      'policy.yaml:6:13 routes[0].name must be a name of lowercase letters, digits, "_", "." or "-", unique among the routes: the route label in metrics, logs, explain and test',
    ],
  ])
})

t.test('derived names that clash get a suffix from the entry itself, so it stays put when routes move', async (t) => {
  const a = { path: '/x/**', upstream: 'orders', auth: 'none' } as RouteDocument
  const b = { path: '/x/**', upstream: 'orders', auth: 'none', forward_token: true } as RouteDocument
  const c = { path: '/y', upstream: 'orders', auth: 'none' } as RouteDocument
  const names = routeNames([a, b], () => t.fail('no problem'))
  t.match(names, [/^\/x\/\*\*~[0-9a-f]{6}$/, /^\/x\/\*\*~[0-9a-f]{6}$/])
  t.not(names[0], names[1])
  t.same(routeNames([c, a, b], () => {}).slice(1), names, 'the same names after an insertion above')
  const twins = routeNames([a, a], () => {})
  t.not(twins[0], twins[1], 'even two identical entries get two names')
})
