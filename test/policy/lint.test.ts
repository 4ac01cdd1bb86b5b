// `jwtgate validate`'s warnings about default-deny surprises (src/policy/lint.ts).
import t from 'tap'
import { lintRoutes } from '../../src/policy/lint.js'
import type { RouteDocument } from '../../src/policy/schema.js'

const route = (path: string, extra: Partial<RouteDocument> = {}): RouteDocument => ({ path, upstream: 'a', auth: 'none', ...extra })
const messages = (routes: RouteDocument[]) => lintRoutes(routes).map((w) => `routes[${w.route}] ${w.message}`)

t.test('a route limited by methods warns about the others, unless a later route takes them', async (t) => {
  t.same(messages([route('/orders/**', { methods: ['GET'] })]), ['routes[0] requests to /orders/** with methods other than GET match no route and get 404'])
  t.same(messages([route('/orders/**', { methods: ['GET'] }), route('/**')]), [], 'a catch-all takes every other method')
  t.same(messages([route('/orders/**', { methods: ['GET'] }), route('/orders/*')]), [
    'routes[0] requests to /orders/** with methods other than GET match no route and get 404',
  ])
})

t.test('routes that split one path by method serve the methods of all of them, said once', async (t) => {
  const split = [route('/orders/**', { methods: ['GET'] }), route('/orders/**', { methods: ['POST', 'DELETE'] })]
  t.same(messages(split), ['routes[0] requests to /orders/** with methods other than DELETE, GET, POST match no route and get 404'])
  t.same(messages([...split, route('/orders/**', { methods: ['PUT', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE'] })]), [
    'routes[0] requests to /orders/** with methods other than DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE match no route and get 404',
  ])
  // A narrower route with another method serves only part of the paths: no help for the rest.
  t.same(messages([route('/orders/**', { methods: ['GET'] }), route('/orders/*', { methods: ['POST'] })]), [
    'routes[0] requests to /orders/** with methods other than GET match no route and get 404',
    'routes[1] requests to /orders/* with methods other than GET, POST match no route and get 404',
  ])
})

t.test('a route limited to a host warns about other hosts, with the methods a host-less route serves', async (t) => {
  t.same(messages([route('/admin/**', { host: 'admin.example.com' })]), [
    'routes[0] requests to /admin/** with hosts other than admin.example.com match no route and get 404',
  ])
  t.same(messages([route('/admin/**', { host: 'admin.example.com' }), route('/**')]), [])
  t.same(messages([route('/admin/**', { host: 'admin.example.com' }), route('/admin/**', { methods: ['GET'] })]), [
    'routes[0] requests to /admin/** with hosts other than admin.example.com and methods other than GET match no route and get 404',
    'routes[1] requests to /admin/** with methods other than GET match no route and get 404',
  ])
  t.same(messages([route('/a/**', { host: '*.example.com', methods: ['GET'] }), route('/a/**', { host: 'api.example.com', methods: ['POST'] })]), [
    'routes[0] requests to /a/** with methods other than GET or hosts other than *.example.com match no route and get 404',
    'routes[1] requests to /a/** with methods other than GET, POST or hosts other than api.example.com match no route and get 404',
  ])
})

t.test('lintRoutes reads each route a bounded number of times, not once per pair', async (t) => {
  // Services with method-split routes and a host route each, then one catch-all for everything:
  // the one route that takes what the others leave is the last.
  let reads = 0
  const counted = (spec: RouteDocument): RouteDocument => {
    const { methods, ...rest } = spec
    return Object.defineProperty(rest, 'methods', {
      enumerable: true,
      get() {
        reads++
        return methods
      },
    }) as RouteDocument
  }
  const routes: RouteDocument[] = []
  for (let i = 0; routes.length < 4000; i++) {
    routes.push(counted(route(`/svc${i}/items/*`, { methods: ['GET', 'HEAD'] })))
    routes.push(counted(route(`/svc${i}/items/*`, { methods: ['PUT', 'DELETE'] })))
    routes.push(counted(route(`/svc${i}/admin/**`, { host: `admin${i % 10}.example.com` })))
  }
  routes.push(counted(route('/**')))
  reads = 0
  t.same(lintRoutes(routes), [])
  // Every pair would be 8 million reads.
  t.ok(reads <= 10 * routes.length, `${reads} reads of methods for ${routes.length} routes`)
})
