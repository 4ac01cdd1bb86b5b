// The route table: the policy's routes in priority order, the first that matches wins.
//
// To keep the cost per request flat as the policy grows, routes are bucketed by the literal
// first segment their path pattern requires (`/api/**` can only match paths whose first
// segment is `api`). Each bucket holds its own routes plus those whose pattern starts with a
// wildcard, merged in priority order, so a request scans one short list and still gets the
// lowest-indexed matching route. Buckets are keyed by a hash of the segment so that finding the
// bucket allocates nothing; a collision only puts extra routes in the list, each still fully
// checked.
import { firstLiteral, patternCovers, type PathPattern } from './path_pattern.js'
import { hostCovers, type HostPattern } from './host_pattern.js'

// Re-exported so the policy compiler can take everything routing-related from this module.
export { compileHostPattern, hostFromHeader, type HostPattern } from './host_pattern.js'
export { compilePathPattern, patternCovers, type PathPattern } from './path_pattern.js'

export interface RouteCandidate<T> {
  path: PathPattern
  /** null: any method. Exact: HEAD is not implied by GET. */
  methods: ReadonlySet<string> | null
  /** null: any host. */
  host: HostPattern | null
  value: T
}

/** Frozen and shared per route, so a match allocates nothing. */
export type RouteMatch<T> = { readonly index: number; readonly value: T }

export type Mismatch = 'path' | 'method' | 'host'

export class RouteTable<T> {
  private readonly routes: readonly RouteCandidate<T>[]
  private readonly results: readonly RouteMatch<T>[]
  private readonly buckets = new Map<number, Int32Array>()
  /** Routes whose pattern starts with a wildcard: the list for a first segment with no bucket. */
  private readonly unbucketed: Int32Array

  constructor(candidates: RouteCandidate<T>[]) {
    this.routes = candidates.slice()
    this.results = candidates.map((c, index) => Object.freeze({ index, value: c.value }))
    const byKey = new Map<number, number[]>()
    const wild: number[] = []
    candidates.forEach((c, i) => {
      const first = firstLiteral(c.path)
      if (first === null) wild.push(i)
      else {
        const key = hashSegment(first, 0, first.length)
        const list = byKey.get(key)
        if (list) list.push(i)
        else byKey.set(key, [i])
      }
    })
    this.unbucketed = Int32Array.from(wild)
    for (const [key, list] of byKey) {
      this.buckets.set(key, Int32Array.from([...list, ...wild]).sort())
    }
  }

  /** The number of routes. */
  get size(): number {
    return this.routes.length
  }

  /** The first route matching the request, or null. `host` comes from hostFromHeader, `path` from normalizePath. */
  match(method: string, host: string, path: string): RouteMatch<T> | null {
    const list = this.buckets.get(hashFirstSegment(path)) ?? this.unbucketed
    for (let k = 0; k < list.length; k++) {
      const i = list[k]
      if (check(this.routes[i], method, host, path) === null) return this.results[i]
    }
    return null
  }

  /** Why route `index` does not match the request, checked in the order path, method, host; null if it matches. */
  mismatch(index: number, method: string, host: string, path: string): Mismatch | null {
    const r = this.routes[index]
    if (r === undefined) throw new RangeError(`no route at index ${index}`)
    return check(r, method, host, path)
  }

  /**
   * Routes that can never match: some single earlier route accepts every path, method and host
   * they do. `by` is the first such route. A route covered only by several earlier routes
   * together (GET by one, POST by another) is not reported.
   */
  shadowedBy(): Array<{ index: number; by: number }> {
    const out: Array<{ index: number; by: number }> = []
    for (let j = 0; j < this.routes.length; j++) {
      for (let i = 0; i < j; i++) {
        if (covers(this.routes[i], this.routes[j])) {
          out.push({ index: j, by: i })
          break
        }
      }
    }
    return out
  }
}

function check<T>(r: RouteCandidate<T>, method: string, host: string, path: string): Mismatch | null {
  if (!r.path.matches(path)) return 'path'
  if (r.methods !== null && !r.methods.has(method)) return 'method'
  if (r.host !== null && !r.host.matches(host)) return 'host'
  return null
}

function covers<T>(a: RouteCandidate<T>, b: RouteCandidate<T>): boolean {
  return methodsCover(a.methods, b.methods) &&
    (a.host === null || (b.host !== null && hostCovers(a.host, b.host))) &&
    patternCovers(a.path, b.path)
}

function methodsCover(a: ReadonlySet<string> | null, b: ReadonlySet<string> | null): boolean {
  if (a === null) return true
  if (b === null) return false
  for (const m of b) if (!a.has(m)) return false
  return true
}

/** FNV-1a over the UTF-16 code units of s[start, end). */
function hashSegment(s: string, start: number, end: number): number {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h | 0
}

/** The hash of the first segment of a path ('' for `/`), without slicing it out. */
function hashFirstSegment(path: string): number {
  let end = path.indexOf('/', 1)
  if (end < 0) end = path.length
  return hashSegment(path, 1, end)
}
