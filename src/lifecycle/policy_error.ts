// What a process says when it cannot start: a bad policy (serve, a cluster's primary and
// workers, validate, explain, test, revoke) or a listener that cannot open.
import { PolicyError, formatProblem } from '../policy/problems.js'
import { ListenError } from './listen.js'

/** Prints every problem as file:line:col and returns exit code 1; rethrows anything else. */
export function printPolicyError(err: unknown): number {
  if (err instanceof ListenError) return printListenError(err)
  if (!(err instanceof PolicyError)) throw err
  for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`)
  process.stderr.write(`${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}; the policy was not loaded\n`)
  return 1
}

/**
 * One JSON line in the shape of the gateway's log lines (level 60, fatal), on standard error,
 * written synchronously before the process exits: a log pipeline reads it like any other line,
 * and a person reads its msg. Never a stack trace: nothing in it is a bug of jwtgate's.
 */
function printListenError(err: ListenError): number {
  const line = { level: 60, time: Date.now(), service: 'jwtgate', listener: err.listener, address: err.address, code: err.code, msg: err.message }
  process.stderr.write(`${JSON.stringify(line)}\n`)
  return 1
}
