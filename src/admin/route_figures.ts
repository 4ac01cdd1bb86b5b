// Per-route figures for the status page: requests, refusals by reason, 5xx and latency, since
// the start and over the last five minutes. They are read from the counters /metrics exports
// (metrics.ts reads them for routeTotals), never counted a second time on the request path: the
// five-minute window is the difference between the totals now and a copy taken five minutes
// ago, one copy every STEP_MS, so a request costs nothing more and a scrape no more than before.

/** What happened on one route over some span. Plain numbers: a worker sends them over IPC and the primary adds them up. */
export interface Counts {
  requests: number
  /** Answered 5xx: refusals that are the gateway's (503) and upstream failures alike. */
  serverErrors: number
  /** Refused, by reason code (jwtgate_auth_failures_total). */
  denied: Record<string, number>
  /** `mode: report`: what enforcing would have refused, by reason (jwtgate_report_decisions_total); forwarded anyway. */
  reported: Record<string, number>
  /** Latency observations per bucket of LATENCY_BUCKETS, not cumulative; the last is above the highest bound. */
  latency: number[]
}

export interface RouteFigures {
  total: Counts
  /** The last WINDOW_MS (less when the process is younger). */
  recent: Counts
}

/** Seconds: jwtgate_request_duration_seconds's buckets. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export const WINDOW_MS = 5 * 60_000
const STEP_MS = 30_000

export function emptyCounts(): Counts {
  return { requests: 0, serverErrors: 0, denied: {}, reported: {}, latency: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0) }
}

/** a + b (or a − b with sign −1), as a new value. */
export function combine(a: Counts, b: Counts, sign: 1 | -1 = 1): Counts {
  const add = (x: Record<string, number>, y: Record<string, number>) => {
    const out = { ...x }
    for (const [k, v] of Object.entries(y)) out[k] = (out[k] ?? 0) + sign * v
    for (const [k, v] of Object.entries(out)) if (v === 0) delete out[k]
    return out
  }
  return {
    requests: a.requests + sign * b.requests,
    serverErrors: a.serverErrors + sign * b.serverErrors,
    denied: add(a.denied, b.denied),
    reported: add(a.reported, b.reported),
    latency: a.latency.map((n, i) => n + sign * (b.latency[i] ?? 0)),
  }
}

export function deniedTotal(counts: Counts): number {
  let n = 0
  for (const v of Object.values(counts.denied)) n += v
  return n
}

/**
 * The q-quantile of the observations in seconds, estimated from the buckets as Prometheus's
 * histogram_quantile does (linear within the bucket it falls in); the highest bound when it falls
 * above it; undefined without observations.
 */
export function quantile(latency: readonly number[], q: number): number | undefined {
  let count = 0
  for (const n of latency) count += n
  if (count === 0) return undefined
  const rank = q * count
  let below = 0
  for (let i = 0; i < latency.length; i++) {
    const n = latency[i]!
    if (below + n >= rank && n > 0) {
      if (i >= LATENCY_BUCKETS.length) return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]
      const lower = i === 0 ? 0 : LATENCY_BUCKETS[i - 1]!
      const upper = LATENCY_BUCKETS[i]!
      return lower + (upper - lower) * ((rank - below) / n)
    }
    below += n
  }
  return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]
}

/**
 * Copies of the per-route totals, one per STEP_MS over the last WINDOW_MS, to take the window's
 * figures from. A copy holds only the routes that had traffic, so it is as large as the routes in
 * use, and there are WINDOW_MS / STEP_MS + 1 of them.
 */
export class RouteWindows {
  private readonly copies: Array<{ at: number; totals: Map<string, Counts> }> = []
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly read: () => Promise<Map<string, Counts>>,
    private readonly stepMs = STEP_MS,
    private readonly windowMs = WINDOW_MS,
  ) {}

  start(): void {
    if (this.timer) return
    void this.take()
    this.timer = setInterval(() => void this.take(), this.stepMs)
    // Figures never keep a process alive.
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Every route with traffic since the start: its totals, and the window's (the totals less the oldest copy in the window). */
  async figures(): Promise<Record<string, RouteFigures>> {
    const now = await this.read()
    // The copy from WINDOW_MS ago, or the oldest there is in a younger process; before any, the start (nothing).
    const base = this.copies.find((c) => c.at >= Date.now() - this.windowMs - this.stepMs / 2)?.totals
    const out: Record<string, RouteFigures> = {}
    for (const [route, total] of now) {
      const before = base?.get(route)
      out[route] = { total, recent: before ? combine(total, before, -1) : total }
    }
    return out
  }

  private async take(): Promise<void> {
    const totals = await this.read()
    this.copies.push({ at: Date.now(), totals })
    const keep = Math.ceil(this.windowMs / this.stepMs) + 1
    while (this.copies.length > keep) this.copies.shift()
  }
}
