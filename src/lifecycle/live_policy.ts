// The policy a process runs on, and how a reload replaces it.
import type { Logger } from 'pino'
import type { CompiledPolicy } from '../policy/compile.js'
import { formatProblem, PolicyError } from '../policy/problems.js'

/** Compiling a policy makes each JWKS issuer an undici Agent; stopping them lets the process exit. */
export function stopIssuers(policy: CompiledPolicy): void {
  for (const issuer of policy.issuers.values()) issuer.stop()
}

/** Says why a reload's policy was refused, problem by problem. */
export function logRejectedReload(err: unknown, policyFile: string, kept: CompiledPolicy, logger: Logger): void {
  const problems = err instanceof PolicyError ? err.problems.map(formatProblem) : [`${policyFile}:1:1 ${(err as Error).message}`]
  for (const problem of problems) logger.error({ problem }, 'policy reload rejected')
  logger.error({ problems: problems.length, kept: kept.hash.slice(0, 12) }, 'policy reload failed; keeping the loaded policy')
}

/** Warns about changes a reload cannot apply. */
export function warnRestartOnly(current: CompiledPolicy, next: CompiledPolicy, logger: Logger): void {
  if (next.listen.port !== current.listen.port || next.listen.host !== current.listen.host || next.maxHeaderBytes !== current.maxHeaderBytes) {
    logger.warn('listen address and limits.max_header_bytes changes take effect at the next restart')
  }
  if (next.workers !== current.workers) logger.warn({ workers: current.workers, next: next.workers }, 'a workers change takes effect at the next restart')
}
