// `jwtgate validate`: a policy checked as the gateway would load it, and the default-deny
// surprises in it pointed out (warnings, which do not fail validation).
import { createLogger } from '../log.js'
import { compilePolicy } from '../policy/compile.js'
import { lintIssuers, lintRoutes } from '../policy/lint.js'
import { readPolicySource } from '../policy/load.js'
import { PolicyError, type DocPath, type PolicyProblem } from '../policy/problems.js'
import { stopIssuers } from '../lifecycle/live_policy.js'

export interface Validation {
  file: string
  routes: number
  issuers: number
  upstreams: number
  /** At their file:line:col, like problems. */
  warnings: PolicyProblem[]
}

/** Throws PolicyError listing every problem when the policy does not load. */
export function validatePolicy(policyFile: string): Validation {
  const source = readPolicySource(policyFile)
  const policy = compilePolicy(source, createLogger('silent'))
  stopIssuers(policy)
  const warnings: PolicyProblem[] = []
  // The loader's problem sink turns a document path into file:line:col.
  const warn = (path: DocPath, message: string) => {
    source.problems.add(path, message)
    warnings.push(source.problems.list.at(-1)!)
  }
  for (const w of lintRoutes(source.document.routes)) warn(['routes', w.route, 'path'], w.message)
  for (const w of lintIssuers(source.document.issuers)) warn(['issuers', w.issuer, 'issuer'], w.message)
  return { file: policyFile, routes: policy.routes.size, issuers: policy.issuers.size, upstreams: policy.upstreams.size, warnings }
}

export function formatWarning(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.col} warning: ${p.message}`
}

/** The line `validate` prints for a good policy. */
export function validationSummary(v: Validation): string {
  return `${v.file}: ok (${v.routes} routes, ${v.issuers} issuers, ${v.upstreams} upstreams)`
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
}

export function validationResult(policyFile: string): ValidationResult {
  try {
    const { file, warnings, routes, issuers, upstreams } = validatePolicy(policyFile)
    return { file, valid: true, problems: [], warnings, routes, issuers, upstreams }
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    return { file: policyFile, valid: false, problems: [...err.problems], warnings: [] }
  }
}
