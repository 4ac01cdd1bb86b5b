// Every policy problem carries the place it was found, so `jwtgate validate` and start-up can
// print them as `file:line:col message`, the form editors and CI annotations understand.

export interface PolicyProblem {
  file: string
  line: number
  col: number
  message: string
}

export function formatProblem(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.col} ${p.message}`
}

/** Thrown when a policy cannot be used; `problems` lists every problem found, not just the first. */
export class PolicyError extends Error {
  readonly problems: readonly PolicyProblem[]
  constructor(problems: PolicyProblem[]) {
    super(problems.map(formatProblem).join('\n'))
    this.name = 'PolicyError'
    this.problems = problems
  }
}

/** A path into the policy document, as ajv and the compiler see it: ['routes', 2, 'upstream']. */
export type DocPath = ReadonlyArray<string | number>

/**
 * How every section compiler says why it cannot compile what it was given: the problem's place
 * in the document and a sentence for the policy author. A compiler calls it once per problem,
 * returns undefined after calling it at least once, and never throws for bad input.
 */
export type OnProblem = (at: DocPath, message: string) => void

/** Collects problems at document paths; the loader turns paths into line and column. */
export interface ProblemSink {
  add(path: DocPath, message: string, at?: 'key' | 'value'): void
}
