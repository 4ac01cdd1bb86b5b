// What a process says when it cannot start: a bad policy (serve, a cluster's primary and
// workers, validate, explain, test, revoke) or a listener that cannot open.
import { type LineFormat, startupLogger } from '../log.js'
import { PolicyError, formatProblem } from '../policy/problems.js'
import { ListenError } from './listen.js'

/** Prints every problem as file:line:col and returns exit code 1; rethrows anything else. */
export function printPolicyError(err: unknown): number {
  if (err instanceof ListenError) return logStartupError(err)
  if (!(err instanceof PolicyError)) throw err
  for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`)
  process.stderr.write(`${summary(err)}\n`)
  return 1
}

/**
 * `serve` (a single gateway, a cluster's primary or worker) that cannot start: JSON lines in the
 * shape of the gateway's log lines (level 60, fatal; `format` is the policy's `log.time` and
 * `log.level_label` when it could be read), on standard error, written synchronously before the
 * process exits. A log pipeline reads them like any other line, and a person reads their msg:
 * for a bad policy one line per problem (file, line, col, problem; msg `file:line:col problem`)
 * and a last one with the count; for a listener the address and the system's code. Never a
 * stack trace: nothing in them is a bug of jwtgate's. Returns exit code 1; rethrows anything else.
 */
export function logStartupError(err: unknown, format?: LineFormat): number {
  const logger = startupLogger(format)
  if (err instanceof ListenError) {
    logger.fatal({ listener: err.listener, address: err.address, code: err.code }, err.message)
    return 1
  }
  if (!(err instanceof PolicyError)) throw err
  for (const p of err.problems) logger.fatal({ file: p.file, line: p.line, col: p.col, problem: p.message }, formatProblem(p))
  logger.fatal({ problems: err.problems.length }, summary(err))
  return 1
}

function summary(err: PolicyError): string {
  return `${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}; the policy was not loaded`
}
