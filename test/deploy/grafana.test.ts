// The Grafana dashboard queries only metrics the gateway exports, and every panel can run.
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { METRIC_NAMES, Metrics } from '../../src/admin/metrics.js'
import { ROOT } from './dockerfile.js'
import { metricNames, selectors } from './promql.js'

const FILE = path.join(ROOT, 'deploy/grafana/jwtgate-dashboard.json')

interface Target {
  expr?: string
  datasource?: { type?: string; uid?: string }
}
interface Panel {
  id: number
  type: string
  title: string
  datasource?: { type?: string; uid?: string }
  targets?: Target[]
  panels?: Panel[]
}

t.test('the PromQL name extraction', async (t) => {
  t.same(metricNames('histogram_quantile(0.99, sum by (le, route) (rate(jwtgate_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'), [
    'jwtgate_request_duration_seconds_bucket',
  ])
  t.same(metricNames('sum(rate(a_total{x="rate(b)"}[5m])) / sum without (y) (c) > bool 0.5e3'), ['a_total', 'c'])
  t.same(metricNames('label_values(jwtgate_policy_info, instance)'), ['jwtgate_policy_info'])
})

const dashboard = JSON.parse(readFileSync(FILE, 'utf8')) as {
  schemaVersion: number
  templating: { list: Array<{ name: string; type: string; query?: unknown }> }
  panels: Panel[]
}
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row')

t.test('the dashboard parses, with a Prometheus data source variable', async (t) => {
  t.ok(dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion}`)
  const ds = dashboard.templating.list.find((v) => v.name === 'datasource')
  t.equal(ds?.type, 'datasource')
  t.equal(ds?.query, 'prometheus')
  t.ok(panels.length >= 10)
  t.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids are unique')
})

t.test('every panel has the data source and at least one query', async (t) => {
  for (const p of panels) {
    t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title}: datasource`)
    t.ok(p.targets?.length, `${p.title}: at least one target`)
    for (const target of p.targets ?? []) {
      t.ok(target.expr?.trim(), `${p.title}: the target has an expression`)
      if (target.datasource) t.equal(target.datasource.uid, '${datasource}', `${p.title}: target datasource`)
    }
  }
})

t.test('the dashboard uses only exported metrics, and shows each jwtgate metric', async (t) => {
  // The default process and Node.js metrics, as prom-client registers them here.
  const registered = new Set((await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name))
  const known = new Set<string>(METRIC_NAMES)
  const used = new Set<string>()
  const exprs = [
    ...panels.flatMap((p) => (p.targets ?? []).map((x) => ({ where: p.title, expr: x.expr ?? '' }))),
    ...dashboard.templating.list
      .filter((v) => v.type === 'query')
      .map((v) => ({ where: `variable ${v.name}`, expr: String((v.query as { query?: string })?.query ?? v.query) })),
  ]
  for (const { where, expr } of exprs) {
    const names = metricNames(expr)
    t.ok(names.length, `${where}: reads a metric (${expr})`)
    for (const name of names) {
      const base = name.replace(/_(bucket|sum|count)$/, '')
      const metric = known.has(base) ? base : name
      used.add(metric)
      const ok = known.has(metric) || (/^(process|nodejs)_/.test(metric) && registered.has(metric))
      t.ok(ok, `${where}: ${name} is exported by jwtgate`)
    }
  }
  for (const name of METRIC_NAMES) t.ok(used.has(name), `${name} is on the dashboard`)
})

const FILTERS = { namespace: '$namespace', job: '$job', pod: '$pod' } as const

t.test('the selector reader', async (t) => {
  t.same(selectors('sum(rate(a_total{x=~"$x", y="}"}[5m])) / b'), [{ metric: 'a_total', matchers: { x: ['=~', '$x'], y: ['=', '}'] } }])
})

/** Every query of a panel, with where it is. */
const panelQueries = panels.flatMap((p) => (p.targets ?? []).map((x) => ({ where: p.title, expr: x.expr ?? '' })))

t.test('every panel query reads each metric filtered by the namespace, job and pod variables', async (t) => {
  for (const { where, expr } of panelQueries) {
    const found = selectors(expr)
    for (const name of metricNames(expr)) {
      const selector = found.find((s) => s.metric === name)
      t.ok(selector, `${where}: ${name} has a label selector`)
      for (const [label, variable] of Object.entries(FILTERS)) {
        t.same(selector?.matchers[label], ['=~', variable], `${where}: ${name} is filtered by ${label}=~"${variable}"`)
      }
    }
  }
  t.notMatch(JSON.stringify(dashboard), /\$instance\b/, 'nothing filters by the old instance variable')
})

t.test('namespace, job, pod and route variables, each narrowed by the ones before it', async (t) => {
  const vars = dashboard.templating.list
  const query = (name: string) => {
    const v = vars.find((x) => x.name === name) as { query?: { query?: string }; multi?: boolean; includeAll?: boolean } | undefined
    return { v, expr: v?.query?.query ?? '' }
  }
  const order = ['namespace', 'job', 'pod', 'route']
  for (const [i, name] of order.entries()) {
    const { v, expr } = query(name)
    t.ok(v?.multi && v.includeAll, `${name}: a multi-value variable with All`)
    const inner = /^label_values\((.*),\s*(\w+)\)$/.exec(expr)
    t.equal(inner?.[2], name, `${name}: the values of the ${name} label`)
    const matchers = selectors(inner?.[1] ?? '')[0]?.matchers ?? {}
    for (const before of order.slice(0, i)) t.same(matchers[before], ['=~', `$${before}`], `${name}: narrowed by ${before}`)
  }
})

t.test('a row repeated per route, whose panels each read only that route', async (t) => {
  const all = dashboard.panels as Array<Panel & { repeat?: string }>
  const at = all.findIndex((p) => p.type === 'row' && p.repeat === 'route')
  t.ok(at >= 0, 'a row repeats by $route')
  t.match(all[at]!.title, /\$route/, 'the row is titled with the route')
  const next = all.findIndex((p, i) => i > at && p.type === 'row')
  const repeated = all.slice(at + 1, next < 0 ? undefined : next)
  t.ok(repeated.length >= 3, 'traffic, refusals and latency for each route')
  for (const p of repeated) {
    for (const target of p.targets ?? []) {
      for (const s of selectors(target.expr ?? '')) t.same(s.matchers.route, ['=~', '$route'], `${p.title}: ${s.metric} for the row's route`)
    }
  }
})
