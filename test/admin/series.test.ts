// The request-path metrics (src/admin/series.ts) must scrape exactly as prom-client's own
// Counter and Histogram would for the same observations: dashboards and alerts query them.
import t from 'tap'
import { Counter, Histogram as PromHistogram, Registry } from 'prom-client'
import { Histogram, RequestCounter } from '../../src/admin/series.js'

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
// On a bound, between bounds, below the first, above the last.
const VALUES = [0.0001, 0.0005, 0.0007, 0.003, 0.2, 1, 50]

t.test('the same exposition text and JSON as prom-client', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const counter = new RequestCounter(ours)
  const histogram = new Histogram('h_seconds', 'Help text.', 'route', BUCKETS, ours)
  const promCounter = new Counter({
    name: 'jwtgate_requests_total',
    help: 'Requests by route, method and status class.',
    labelNames: ['route', 'method', 'status_class'],
    registers: [theirs],
  })
  const promHistogram = new PromHistogram({ name: 'h_seconds', help: 'Help text.', labelNames: ['route'], buckets: BUCKETS, registers: [theirs] })
  for (const route of ['GET,POST api.example.com/api/**', 'a "quoted\\" \nname']) {
    for (const v of VALUES) {
      histogram.of(route).observe(v)
      promHistogram.labels(route).observe(v)
      counter.inc(route, 'GET', v < 1 ? '2xx' : '5xx')
      promCounter.labels(route, 'GET', v < 1 ? '2xx' : '5xx').inc()
    }
  }
  counter.inc('other', 'POST', '4xx')
  promCounter.labels('other', 'POST', '4xx').inc()
  t.equal(await ours.metrics(), await theirs.metrics())
  t.same(
    JSON.parse(JSON.stringify(await ours.getMetricsAsJSON())),
    JSON.parse(JSON.stringify(await theirs.getMetricsAsJSON())).map((m: { values: object[] }) => ({
      ...m,
      values: m.values.map((v) => Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'exemplar'))),
    })),
  )

  histogram.reset()
  t.equal((await ours.metrics()).split('\n\n')[1], '# HELP h_seconds Help text.\n# TYPE h_seconds histogram\n', 'reset empties the histogram')
})
