// Metrics written on every request, kept as plain numbers and handed to prom-client only when
// it is scraped. prom-client's own Counter and Histogram hash their label object, validate it and
// (histograms) turn each bucket bound into a property name on every call: a few per cent of a
// request's CPU in the benchmark's profile. Here a request costs a map read and an increment.
import { Counter, type Registry } from 'prom-client'

/** One label set of a histogram. */
export class HistogramSeries {
  /** Observations per bucket, not cumulative; the last slot is above the highest bound (+Inf). */
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe(value: number): void {
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }
}

/**
 * A histogram with one label, registered in a prom-client Registry, which reads it (`get`,
 * `getForPromString`) in the same shape as its own histograms: the same exposition text.
 */
export class Histogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly series = new Map<string, HistogramSeries>()

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelName: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never)
  }

  /** The series for one value of the label. */
  of(value: string): HistogramSeries {
    let s = this.series.get(value)
    if (!s) this.series.set(value, (s = new HistogramSeries({ [this.labelName]: value }, this.bounds)))
    return s
  }

  reset(): void {
    this.series.clear()
  }

  /** Each label value's series, for the status page (read, never written). */
  entries(): IterableIterator<[string, HistogramSeries]> {
    return this.series.entries()
  }

  getForPromString() {
    const bucket = `${this.name}_bucket`
    const values: { labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string }[] = []
    for (const s of this.series.values()) {
      let cumulative = 0
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i]!
        values.push({ labels: { le }, sharedLabels: s.labels, value: cumulative, metricName: bucket })
      })
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket })
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  /** As JSON (`registry.getMetricsAsJSON()`): each value's labels with the series' labels merged in. */
  get() {
    const data = this.getForPromString()
    return { ...data, values: data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) }
  }
}

/**
 * `jwtgate_requests_total{route, method, status_class}`: counted in nested maps (no key string
 * per request) and copied into a prom-client Counter when scraped.
 */
export class RequestCounter {
  private readonly counts = new Map<string, Map<string, Map<string, number>>>()

  constructor(registry: Registry) {
    const counts = this.counts
    new Counter({
      name: 'jwtgate_requests_total',
      help: 'Requests by route, method and status class.',
      labelNames: ['route', 'method', 'status_class'] as const,
      registers: [registry],
      collect() {
        this.reset()
        for (const [route, byMethod] of counts) {
          for (const [method, byClass] of byMethod) {
            for (const [statusClass, n] of byClass) this.inc({ route, method, status_class: statusClass }, n)
          }
        }
      },
    })
  }

  /** Per route: every request, and those answered 5xx. For the status page; a scrape does not use it. */
  byRoute(): Map<string, { requests: number; serverErrors: number }> {
    const out = new Map<string, { requests: number; serverErrors: number }>()
    for (const [route, byMethod] of this.counts) {
      let requests = 0
      let serverErrors = 0
      for (const byClass of byMethod.values()) {
        for (const [statusClass, n] of byClass) {
          requests += n
          if (statusClass === '5xx') serverErrors += n
        }
      }
      out.set(route, { requests, serverErrors })
    }
    return out
  }

  inc(route: string, method: string, statusClass: string): void {
    let byMethod = this.counts.get(route)
    if (!byMethod) this.counts.set(route, (byMethod = new Map()))
    let byClass = byMethod.get(method)
    if (!byClass) byMethod.set(method, (byClass = new Map()))
    byClass.set(statusClass, (byClass.get(statusClass) ?? 0) + 1)
  }
}
