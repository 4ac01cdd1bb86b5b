// What can still be compiled of a policy document with schema problems, so that one run reports
// every problem of a file: a typo in one route must not hide an unknown upstream in another, or
// a route that no request can reach. The parts with problems are left out whole (a route, an
// issuer, an upstream, a section), never patched: what is compiled is exactly what was written,
// and nothing left out can cause a problem of its own elsewhere (see LeftOut).
import type { DocPath } from './problems.js'
import type { PolicyDocument } from './schema.js'

/** What was left out of a document, for the compiler to skip without more problems. */
export interface LeftOut {
  /** Indexes into routes: skipped, so the other routes keep their index (problems name it). */
  readonly routes: ReadonlySet<number>
  /** Names still declared: a route that uses one is not told it is unknown. */
  readonly issuers: ReadonlySet<string>
  readonly upstreams: ReadonlySet<string>
}

// Sections the compiler cannot do without, or whose loss would make every route's reference to
// them a problem: one broken as a whole (not a map, empty) stops the compile.
const WHOLE = new Set(['listen', 'upstreams', 'routes', 'issuers'])

/**
 * The document without the parts that have schema problems (`broken`: each problem's path), or
 * undefined when nothing worth compiling is left (a required section missing or of the wrong
 * type). A problem inside a route, an issuer or an upstream leaves that entry out; inside
 * `listen`, that field; anywhere else, its top-level section.
 */
export function compilableParts(document: unknown, broken: readonly DocPath[]): { document: PolicyDocument; leftOut: LeftOut } | undefined {
  if (!isMap(document)) return undefined
  const routes = new Set<number>()
  const issuers = new Set<string>()
  const upstreams = new Set<string>()
  const doc: Record<string, unknown> = { ...document }
  for (const [section, entry] of broken) {
    if (section === undefined || (WHOLE.has(String(section)) && entry === undefined)) return undefined
    if (section === 'routes') routes.add(Number(entry))
    else if (section === 'issuers') issuers.add(String(entry))
    else if (section === 'upstreams') upstreams.add(String(entry))
    else if (section === 'listen') doc.listen = without(doc.listen, String(entry))
    // version is read by nothing; everything else is optional and left out whole.
    else if (section !== 'version') delete doc[section]
  }
  if (issuers.size) doc.issuers = without(doc.issuers, ...issuers)
  if (upstreams.size) doc.upstreams = without(doc.upstreams, ...upstreams)
  return { document: doc as unknown as PolicyDocument, leftOut: { routes, issuers, upstreams } }
}

function without(map: unknown, ...keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(map as Record<string, unknown>) }
  for (const key of keys) delete out[key]
  return out
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
