// Route path patterns as written in the policy: `/health` (exact), `/api/orders/*`, `/public/**`.
//
// The segment model, used alike for patterns and for the normalized paths they are matched
// against: a path is '/' followed by its segments joined with '/', and always has at least one
// segment. So `/a/b` is ['a', 'b'], `/a/b/` is ['a', 'b', ''] (a trailing slash is a final empty
// segment) and the root `/` is ['']. A normalized path has no empty segment except possibly
// the last one.
//
//   literal  matches exactly that segment, case-sensitively
//   *        matches exactly one non-empty segment: `/*` matches `/a` but not `/` nor `/a/`
//   **       matches zero or more segments, empty ones included: `/api/**` matches `/api`,
//            `/api/` and `/api/a/b`; `/**` matches every path
import type { DocPath, OnProblem } from '../policy/problems.js'
import { normalizePath } from './normalize.js'

export interface PathPattern {
  readonly source: string
  /** `path` must be normalized (see normalizePath). */
  matches(path: string): boolean
}

const LITERAL = 0
const STAR = 1
const GLOBSTAR = 2

interface Token {
  readonly kind: typeof LITERAL | typeof STAR | typeof GLOBSTAR
  readonly text: string
}

const EXACT = 0 // no wildcard: a string compare
const PREFIX = 1 // literals then one final `**`: a startsWith on a segment boundary
const GENERAL = 2

const SLASH = 0x2f

class CompiledPathPattern implements PathPattern {
  readonly source: string
  readonly tokens: readonly Token[]
  private readonly shape: number
  private readonly prefix: string

  constructor(source: string, tokens: Token[]) {
    this.source = source
    this.tokens = tokens
    const wildcards = tokens.filter((t) => t.kind !== LITERAL).length
    if (wildcards === 0) {
      this.shape = EXACT
      this.prefix = source
    } else if (wildcards === 1 && tokens.at(-1)?.kind === GLOBSTAR) {
      this.shape = PREFIX
      this.prefix = source.slice(0, -3) // without the final '/**'; '' for `/**`
    } else {
      this.shape = GENERAL
      this.prefix = ''
    }
  }

  matches(path: string): boolean {
    if (this.shape === EXACT) return path === this.prefix
    if (this.shape === PREFIX) {
      const p = this.prefix
      if (!path.startsWith(p)) return false
      // `/api/**` matches `/api` itself and anything under `/api/`, but not `/apix`.
      if (path.length === p.length) return p.length > 0
      return path.charCodeAt(p.length) === SLASH
    }
    return walk(this.tokens, path)
  }
}

/** Compiles a policy path pattern; undefined after saying at `at` what is wrong with an invalid one. */
export function compilePathPattern(source: string, at: DocPath, problem: OnProblem): PathPattern | undefined {
  const fail = (why: string): undefined => {
    problem(at, `invalid path pattern ${JSON.stringify(source)}: ${why}`)
    return undefined
  }
  if (source.charCodeAt(0) !== SLASH) return fail('it must start with /')
  // Patterns are compared with normalized paths, so one that is not normalized could never
  // match what it appears to say (`/a/./b`, `/a//b`, `/%61`). Refuse it rather than guess.
  // `;` is allowed here: whether requests may carry it is the policy's reject_path_parameters.
  const normal = normalizePath(source, { rejectPathParameters: false })
  if (!normal.ok) return fail(normal.reason)
  if (normal.path !== source) return fail(`it is not in normal form; write it as ${JSON.stringify(normal.path)}`)
  const tokens: Token[] = []
  for (const text of source.slice(1).split('/')) {
    if (text === '*') tokens.push({ kind: STAR, text })
    else if (text === '**') {
      if (tokens.at(-1)?.kind === GLOBSTAR) return fail('"**/**" is the same as "**"; write it once')
      tokens.push({ kind: GLOBSTAR, text })
    } else if (text.includes('*')) return fail('wildcards must be a whole segment ("*" or "**")')
    else tokens.push({ kind: LITERAL, text })
  }
  return new CompiledPathPattern(source, tokens)
}

/**
 * Match the path's segments against the tokens, scanning indices instead of splitting.
 * This is the usual wildcard algorithm with segments for characters: on a mismatch, let the
 * most recent `**` swallow one more segment and retry. Each non-`**` token consumes exactly one
 * segment, which is what makes remembering only the last `**` enough.
 */
function walk(tokens: readonly Token[], path: string): boolean {
  if (path.charCodeAt(0) !== SLASH) return false
  const n = tokens.length
  const end = path.length
  let t = 0
  let s = 1 // start of the current segment; past the last segment when s > end
  let backT = -1
  let backS = 0
  while (s <= end) {
    let e = path.indexOf('/', s)
    if (e < 0) e = end
    const tok = tokens[t]
    if (tok !== undefined) {
      if (tok.kind === GLOBSTAR) {
        backT = t++
        backS = s
        continue
      }
      const ok = tok.kind === STAR ? e > s : e - s === tok.text.length && path.startsWith(tok.text, s)
      if (ok) {
        t++
        s = e + 1
        continue
      }
    }
    if (backT < 0) return false
    let be = path.indexOf('/', backS)
    if (be < 0) be = end
    backS = be + 1
    s = backS
    t = backT + 1
  }
  while (tokens[t]?.kind === GLOBSTAR) t++
  return t === n
}

/**
 * The tokens of a pattern, recompiling one that did not come from compilePathPattern. Only a
 * pattern object made outside the compiler can be invalid here: that is a programming error.
 */
function tokensOf(p: PathPattern): readonly Token[] {
  if (p instanceof CompiledPathPattern) return p.tokens
  const compiled = compilePathPattern(p.source, [], (_at, message) => {
    throw new Error(message)
  })
  return (compiled as CompiledPathPattern).tokens
}

/**
 * The literal segments a pattern starts with, before its first wildcard: every path it matches
 * starts with exactly these segments. Empty for a foreign pattern (it may match anything).
 */
export function literalPrefix(p: PathPattern): readonly string[] {
  if (!(p instanceof CompiledPathPattern)) return []
  const out: string[] = []
  for (const t of p.tokens) {
    if (t.kind !== LITERAL) break
    out.push(t.text)
  }
  return out
}

/**
 * The literal segments a pattern's source starts with, foreign patterns included (read as their
 * source, as patternCovers reads them). `a` can cover `b` only when this of `a` is a prefix of
 * this of `b`: past the shorter of the two, `b` has a wildcard or its end, where it accepts a
 * path `a` refuses (another segment, or none). RouteTable.shadowedBy compares only such pairs.
 */
export function coverPrefix(p: PathPattern): readonly string[] {
  const out: string[] = []
  for (const t of tokensOf(p)) {
    if (t.kind !== LITERAL) break
    out.push(t.text)
  }
  return out
}

interface CoverNode {
  items: number[]
  children: Map<string, CoverNode>
}

/**
 * Patterns filed by their coverPrefix, to find the ones that may cover a given pattern without
 * comparing every pair: only those filed on its branch (a prefix of its own coverPrefix) can.
 * Near-linear for a policy of distinct prefixes; patterns that start with a wildcard are on
 * every branch.
 */
export class CoverIndex {
  private readonly root: CoverNode = { items: [], children: new Map() }

  /** `prefix`: the coverPrefix of the item's pattern. */
  add(item: number, prefix: readonly string[]): void {
    let node = this.root
    for (const literal of prefix) {
      let child = node.children.get(literal)
      if (!child) node.children.set(literal, (child = { items: [], children: new Map() }))
      node = child
    }
    node.items.push(item)
  }

  /** The items filed on the branch of a pattern with this coverPrefix, in ascending order: the only ones whose pattern may cover it. */
  candidates(prefix: readonly string[]): number[] {
    let node: CoverNode | undefined = this.root
    const out = [...node.items]
    for (const literal of prefix) {
      node = node.children.get(literal)
      if (!node) break
      for (const item of node.items) out.push(item)
    }
    return out.sort((x, y) => x - y)
  }
}

/**
 * True iff every normalized path matched by `b` is also matched by `a`. Exact, not just sound.
 *
 * Patterns are regular expressions over segments. Only finitely many segments matter: the
 * literals of either pattern, the empty segment, and "any other non-empty segment", which both
 * patterns treat alike. Walk the product of the two patterns' subset automata and an automaton
 * for normalized paths (at least one segment; an empty segment only last) looking for a path b
 * accepts and a does not. Runs at policy load, never per request.
 */
export function patternCovers(a: PathPattern, b: PathPattern): boolean {
  const ta = tokensOf(a)
  const tb = tokensOf(b)
  const symbols: Array<string | null> = ['', null] // null: a non-empty segment that is no literal
  for (const t of [...ta, ...tb]) {
    if (t.kind === LITERAL && !symbols.includes(t.text)) symbols.push(t.text)
  }
  const startA = closure(ta, [0])
  const startB = closure(tb, [0])
  const seen = new Set<string>()
  const queue: Array<[number[], number[], PathState]> = [[startB, startA, START]]
  while (queue.length > 0) {
    const [sb, sa, u] = queue.pop()!
    for (const sym of symbols) {
      const nu = stepPath(u, sym)
      if (nu === DEAD) continue
      const nb = step(tb, sb, sym)
      if (nb.length === 0) continue
      const na = step(ta, sa, sym)
      if (nb.includes(tb.length) && !na.includes(ta.length)) return false
      const key = `${nb.join(',')}|${na.join(',')}|${nu}`
      if (seen.has(key)) continue
      seen.add(key)
      queue.push([nb, na, nu])
    }
  }
  return true
}

// Normalized paths as an automaton over segments.
type PathState = number
const START = 0 // no segment yet (not accepting: a path has at least one)
const NONEMPTY = 1 // after a non-empty segment
const FINAL = 2 // after an empty segment, which must be the last
const DEAD = -1

function stepPath(u: PathState, sym: string | null): PathState {
  if (u === FINAL) return DEAD
  return sym === '' ? FINAL : NONEMPTY
}

/** Token positions reachable from `states` by consuming one segment `sym`. */
function step(tokens: readonly Token[], states: number[], sym: string | null): number[] {
  const next: number[] = []
  for (const p of states) {
    const tok = tokens[p]
    if (tok === undefined) continue
    if (tok.kind === GLOBSTAR) next.push(p)
    else if (tok.kind === STAR ? sym !== '' : sym === tok.text) next.push(p + 1)
  }
  return closure(tokens, next)
}

/** Add the positions reachable by letting a `**` match nothing; sorted and deduplicated. */
function closure(tokens: readonly Token[], states: number[]): number[] {
  const out = new Set<number>()
  for (let p of states) {
    out.add(p)
    while (tokens[p]?.kind === GLOBSTAR) out.add(++p)
  }
  return [...out].sort((x, y) => x - y)
}
