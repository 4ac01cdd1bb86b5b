// The route table: the policy's routes in priority order, the first that matches wins.
//
// To keep the cost per request flat as the policy grows, routes are indexed by the literal
// segments their path pattern starts with (`/api/orders/**` can only match paths whose first
// two segments are `api` and `orders`), in a tree with one level per segment. Each node holds
// its own routes merged in priority order with those of every node above it, down from the
// routes whose pattern starts with a wildcard; a request walks down the tree along its own
// segments as far as it can and scans the one short list where it stops, so it still gets the
// lowest-indexed matching route. Children are keyed by a hash of the segment, so that the walk
// allocates nothing; a collision only merges two nodes' routes into one list, each route still
// fully checked.
import { CoverIndex, coverPrefix, literalPrefix, patternCovers, type PathPattern } from './path_pattern.js'
import { hostCovers, type HostPattern } from './host_pattern.js'

// Re-exported so the policy compiler can take everything routing-related from this module.
export { compileHostPattern, hostCovers, hostFromHeader, type HostPattern } from './host_pattern.js'
export { compilePathPattern, CoverIndex, coverPrefix, patternCovers, type PathPattern } from './path_pattern.js'

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

interface IndexNode {
  /** Its own routes and those of the nodes above it, in priority order. */
  list: Int32Array
  /** By the hash of the next segment; null for a leaf. */
  children: Map<number, IndexNode> | null
}

export class RouteTable<T> {
  private readonly routes: readonly RouteCandidate<T>[]
  private readonly results: readonly RouteMatch<T>[]
  /** Its list: the routes whose pattern starts with a wildcard. */
  private readonly root: IndexNode

  /** `root`: the index built by RouteTable.build; without it, built here. */
  constructor(candidates: RouteCandidate<T>[], root?: IndexNode) {
    this.routes = candidates.slice()
    this.results = candidates.map((c, index) => Object.freeze({ index, value: c.value }))
    this.root = root ?? runToEnd(indexRoutes(candidates))
  }

  /** The table with its index built route by route, for a compile that gives the event loop turns. */
  static *build<T>(candidates: RouteCandidate<T>[]): Generator<void, RouteTable<T>, void> {
    const root = yield* indexRoutes(candidates)
    return new RouteTable(candidates, root)
  }

  /** The number of routes. */
  get size(): number {
    return this.routes.length
  }

  /** Every route's value, in policy order: for what is built once per route at load. */
  values(): T[] {
    return this.routes.map((r) => r.value)
  }

  /** The first route matching the request, or null. `host` comes from hostFromHeader, `path` from normalizePath. */
  match(method: string, host: string, path: string): RouteMatch<T> | null {
    // Down the index along the path's segments (`/` is one empty segment) while there is a node.
    let node = this.root
    let start = 1
    while (node.children !== null) {
      let end = path.indexOf('/', start)
      if (end < 0) end = path.length
      const next = node.children.get(hashSegment(path, start, end))
      if (next === undefined) break
      node = next
      if (end === path.length) break
      start = end + 1
    }
    // The index holds positions of this.routes, and results is parallel to it.
    for (const i of node.list) {
      if (check(this.routes[i]!, method, host, path) === null) return this.results[i]!
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
    for (const found of this.shadowing()) if (found) out.push(found)
    return out
  }

  /**
   * shadowedBy route by route: yields each shadowed route as found and undefined after every
   * other, so a compile that gives the event loop turns can stop between two routes.
   */
  *shadowing(): Generator<{ index: number; by: number } | undefined, void, void> {
    // Only an earlier route whose literal prefix is a prefix of this route's can cover it
    // (coverPrefix), so each route is compared with the earlier routes on its own branch of a
    // trie of literal prefixes, cheapest checks (methods, host) first: near-linear for a policy
    // of distinct prefixes (5,000 routes: tens of milliseconds), where comparing every pair cost
    // 13.5 s at 1,000 routes. Still quadratic for routes that all start with a wildcard.
    const index = new CoverIndex()
    for (const [j, later] of this.routes.entries()) {
      // The first that covers, in priority order, as a scan of every earlier route would find.
      const prefix = coverPrefix(later.path)
      const by = index.candidates(prefix).find((i) => covers(this.routes[i]!, later))
      index.add(j, prefix)
      yield by === undefined ? undefined : { index: j, by }
    }
  }
}

function check<T>(r: RouteCandidate<T>, method: string, host: string, path: string): Mismatch | null {
  if (!r.path.matches(path)) return 'path'
  if (r.methods !== null && !r.methods.has(method)) return 'method'
  if (r.host !== null && !r.host.matches(host)) return 'host'
  return null
}

function covers<T>(a: RouteCandidate<T>, b: RouteCandidate<T>): boolean {
  return methodsCover(a.methods, b.methods) && (a.host === null || (b.host !== null && hostCovers(a.host, b.host))) && patternCovers(a.path, b.path)
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

interface Building {
  own: number[]
  children: Map<number, Building>
}

/** The index of the routes (see the top of this file); yields after each route and each node. */
function* indexRoutes<T>(candidates: readonly RouteCandidate<T>[]): Generator<void, IndexNode, void> {
  const top: Building = { own: [], children: new Map() }
  for (const [i, c] of candidates.entries()) {
    let node = top
    for (const literal of literalPrefix(c.path)) {
      const key = hashSegment(literal, 0, literal.length)
      let child = node.children.get(key)
      if (!child) node.children.set(key, (child = { own: [], children: new Map() }))
      node = child
    }
    node.own.push(i)
    yield
  }
  return yield* finish(top, new Int32Array(0))
}

function* finish(node: Building, above: Int32Array): Generator<void, IndexNode, void> {
  const list = node.own.length ? Int32Array.from([...above, ...node.own]).sort() : above
  let children: Map<number, IndexNode> | null = null
  if (node.children.size) {
    children = new Map()
    for (const [key, child] of node.children) children.set(key, yield* finish(child, list))
  }
  yield
  return { list, children }
}

function runToEnd<R>(steps: Generator<void, R, void>): R {
  for (;;) {
    const step = steps.next()
    if (step.done) return step.value
  }
}
