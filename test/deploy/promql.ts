// Just enough PromQL reading for the deploy tests: which metrics an expression reads, its label
// selectors and its by/without label lists. Not a parser: string literals, ranges and Grafana
// variables are blanked first, which is all the dashboard and the alerts need.

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

/** The metric names a PromQL expression reads. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""') // string literals
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // ranges
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '') // label lists
    .replace(/\$\{?\w+\}?/g, '') // Grafana variables
    .replace(/\blabel_values\(\s*([^,)]*?)\s*,[^)]*\)/g, ' $1 ') // label_values(metric, label)
  const names: string[] = []
  for (const m of bare.matchAll(/(?<![\w.])[A-Za-z_:][\w:]*/g)) {
    const function_ = /^\s*\(/.test(bare.slice(m.index + m[0].length))
    if (!function_ && !KEYWORDS.has(m[0].toLowerCase())) names.push(m[0])
  }
  return names
}

export interface Selector {
  metric: string
  /** label → [operator, value] */
  matchers: Record<string, [string, string]>
}

/** Each `metric{…}` selector of an expression. */
export function selectors(expr: string): Selector[] {
  const out: Selector[] = []
  for (const m of expr.matchAll(/([A-Za-z_:][\w:]*)\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}/g)) {
    const matchers: Record<string, [string, string]> = {}
    for (const x of m[2]!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) matchers[x[1]!] = [x[2]!, x[3]!]
    out.push({ metric: m[1]!, matchers })
  }
  return out
}

/** The labels named in by (…) and without (…) clauses. */
export function groupingLabels(expr: string): string[] {
  return [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((l) => l.trim())
      .filter(Boolean),
  )
}
