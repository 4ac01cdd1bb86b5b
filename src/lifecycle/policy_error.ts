// What a process says when the policy it was given is bad: every command that loads one
// (serve, a cluster's primary and workers, validate, explain, test, revoke) says it this way.
import { PolicyError, formatProblem } from '../policy/problems.js'

/** Prints every problem as file:line:col and returns exit code 1; rethrows anything else. */
export function printPolicyError(err: unknown): number {
  if (!(err instanceof PolicyError)) throw err
  for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`)
  process.stderr.write(`${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}; the policy was not loaded\n`)
  return 1
}
