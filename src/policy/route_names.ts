// The name a route goes by in metrics, logs, `explain` and `test`: its `name:` when it has one,
// else one derived from what it matches. Never its position: a route inserted above the others
// must not rename their series and break the dashboards and alerts built on them.
import { createHash } from 'node:crypto'
import type { OnProblem } from './problems.js'
import type { RouteDocument } from './schema.js'

/**
 * One name per route, in document order. A derived name is the route's methods, host and path
 * (`GET,POST api.example.com/orders/**`, `/public/**`); it always holds a `/` and a given name
 * cannot (schema pattern), so the two never clash. Derived names that do clash get a short
 * hash of the route's whole entry, which depends on nothing but that entry.
 */
export function routeNames(routes: ReadonlyArray<RouteDocument | undefined>, problem: OnProblem): string[] {
  // A route left out of a draft (undefined) has no name, and takes none from the others.
  const derived = routes.map((spec) => (spec ? derivedName(spec) : ''))
  const names = routes.map((spec, i) => spec?.name ?? derived[i]!)
  // Counted, not searched: indexOf per route made 5,000 routes cost 25 million comparisons.
  const uses = new Map<string, number>()
  for (const d of derived) uses.set(d, (uses.get(d) ?? 0) + 1)
  const clashing = new Set(derived.filter((d, i) => routes[i]?.name === undefined && uses.get(d)! > 1))
  const taken = new Map<string, number>()
  routes.forEach((spec, i) => {
    if (!spec) return
    if (spec.name === undefined && clashing.has(derived[i]!)) names[i] = uniqueName(`${derived[i]}~${entryHash(spec)}`, taken)
    const first = taken.get(names[i]!)
    if (spec.name !== undefined && first !== undefined) problem(['routes', i, 'name'], `route name "${spec.name}" is already used by routes[${first}]`)
    else if (first === undefined) taken.set(names[i]!, i)
  })
  return names
}

function derivedName(spec: RouteDocument): string {
  const methods = spec.methods ? `${[...spec.methods].sort().join(',')} ` : ''
  return `${methods}${spec.host?.toLowerCase() ?? ''}${spec.path}`
}

function entryHash(spec: RouteDocument): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 6)
}

/** Two entries written exactly alike (the second unreachable, which the compiler reports): numbered. */
function uniqueName(name: string, taken: ReadonlyMap<string, number>): string {
  let candidate = name
  for (let n = 2; taken.has(candidate); n++) candidate = `${name}-${n}`
  return candidate
}
