// `jwtgate validate`: a policy checked as the gateway would load it, and the default-deny
// surprises in it pointed out (warnings, which do not fail validation).
import { createLogger } from '../log.js'
import { compilePolicy, type CompiledPolicy } from '../policy/compile.js'
import { lintIssuers, lintRoutes } from '../policy/lint.js'
import { readPolicyDraft, type ReadOptions } from '../policy/load.js'
import { PolicyError, type DocPath, type PolicyProblem } from '../policy/problems.js'
import { stopIssuers } from '../lifecycle/live_policy.js'

export interface Validation {
  file: string
  routes: number
  issuers: number
  upstreams: number
  /** At their file:line:col, like problems. */
  warnings: PolicyProblem[]
  /** Offline: what was taken as given instead of read (each ${VAR} without a fallback, each file the policy names). */
  unchecked?: PolicyProblem[]
}

/**
 * Throws PolicyError listing every problem when the policy does not load: those of the
 * environment and the fields, of the references between sections, and the unreachable routes,
 * all in one run (a draft compiles the parts that have no problem of their own).
 */
export function validatePolicy(policyFile: string, options: ReadOptions = {}): Validation {
  const source = readPolicyDraft(policyFile, process.env, options)
  let policy: CompiledPolicy | undefined
  try {
    policy = compilePolicy(source, createLogger('silent'))
    stopIssuers(policy)
  } catch (err) {
    // Offline, what was built from a value not read is left unchecked: no problem is said
    // about it, and what depends on it is not compiled. Valid when nothing else is wrong.
    if (!(err instanceof PolicyError) || err.problems.length || !source.unchecked) throw err
  }
  const warnings: PolicyProblem[] = []
  // The loader's problem sink turns a document path into file:line:col.
  const warn = (path: DocPath, message: string) => {
    const before = source.problems.list.length
    source.problems.add(path, message)
    if (source.problems.list.length > before) warnings.push(source.problems.list.pop()!)
  }
  const doc = source.document
  for (const w of lintRoutes(doc.routes)) warn(['routes', w.route, 'path'], w.message)
  for (const w of lintIssuers(doc.issuers)) warn(['issuers', w.issuer, 'issuer'], w.message)
  // Offline, what was not compiled is counted from the document, with what the draft left out.
  const leftOut = source.leftOut
  return {
    file: policyFile,
    routes: policy?.routes.size ?? doc.routes.length,
    issuers: policy?.issuers.size ?? Object.keys(doc.issuers ?? {}).length + (leftOut?.issuers.size ?? 0),
    upstreams: policy?.upstreams.size ?? Object.keys(doc.upstreams).length + (leftOut?.upstreams.size ?? 0),
    warnings,
    ...(source.unchecked ? { unchecked: source.unchecked.list } : {}),
  }
}

export function formatWarning(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.col} warning: ${p.message}`
}

/** The line `validate` prints for a good policy. */
export function validationSummary(v: Validation): string {
  const counts = `${v.routes} routes, ${v.issuers} issuers, ${v.upstreams} upstreams`
  if (!v.unchecked) return `${v.file}: ok (${counts})`
  const n = v.unchecked.length
  return `${v.file}: ok offline (${counts}; ${n} value${n === 1 ? '' : 's'} from the environment or files taken as given)`
}

/** A note of what offline validation did not check, as `validate` prints it. */
export function formatUnchecked(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.col} not checked: ${p.message}`
}

/** What `validate --json` prints: the same facts as the text form, in one object. */
export interface ValidationResult {
  file: string
  valid: boolean
  /** Each at file:line:col; empty when valid. */
  problems: PolicyProblem[]
  warnings: PolicyProblem[]
  routes?: number
  issuers?: number
  upstreams?: number
  /** --offline: what was taken as given instead of read, each at its place. */
  unchecked?: PolicyProblem[]
}

export function validationResult(policyFile: string, options: ReadOptions = {}): ValidationResult {
  try {
    const { file, warnings, routes, issuers, upstreams, unchecked } = validatePolicy(policyFile, options)
    return { file, valid: true, problems: [], warnings, routes, issuers, upstreams, ...(unchecked ? { unchecked } : {}) }
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    return { file: policyFile, valid: false, problems: [...err.problems], warnings: [] }
  }
}
