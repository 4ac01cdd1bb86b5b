// Runs the `jwtgate` command as a child process, the way users run it, from the compiled
// JavaScript in dist/ that test/support/build.ts writes once before the test files run: a child
// that registered tsx again would spend seconds compiling what every other child compiles too.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { explain, explainArguments, explainExitCode, explainOutput } from '../../src/cli/explain.js'
import { validatePolicy } from '../../src/cli/validate.js'
import { formatProblem, PolicyError } from '../../src/policy/problems.js'

/** The compiled command: `node MAIN serve …` is what bin/jwtgate.js runs in the image. */
export const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
/** The command as the checkout runs it (through tsx): kept for the test that bin/jwtgate.js works. */
export const BIN = fileURLToPath(new URL('../../bin/jwtgate.js', import.meta.url))

/**
 * The environment for a child: the test's own, without the hooks tap puts in NODE_OPTIONS
 * (@tapjs/processinfo, for coverage, which is off): they cost each child about a second.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const options = (process.env.NODE_OPTIONS ?? '').split(/\s+/).filter((o) => o && !o.includes('@tapjs/'))
  return { ...process.env, NODE_OPTIONS: options.join(' '), ...extra }
}

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Asynchronous (unlike spawnSync) so servers living in the test process, a dev issuer or an
 * upstream, keep answering the child. The timeout only guards against a hang.
 */
export function jwtgate(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000, nodeArgs: string[] = []): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, MAIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`jwtgate ${args.join(' ')} did not finish: ${stderr}`))
    }, timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/**
 * `jwtgate explain ARGS` in this process, from the arguments to what it prints on stdout and its
 * exit code; a usage error or a bad policy throws. The command's wiring is tested once, as a child.
 */
export async function explainHere(args: string[]): Promise<{ code: number; stdout: string }> {
  const parsed = explainArguments(args, {})
  if (typeof parsed === 'string') throw new Error(`explain ${args.join(' ')}: ${parsed}`)
  const explanation = await explain(parsed.options)
  return { code: explainExitCode(explanation), stdout: explainOutput(explanation, parsed.json) }
}

/** What `jwtgate validate` would print as problems for a policy file (file:line:col message); empty when it validates. */
export function validationProblems(file: string): string[] {
  try {
    validatePolicy(file)
    return []
  } catch (err) {
    if (err instanceof PolicyError) return err.problems.map(formatProblem)
    throw err
  }
}

/** A long-running child (`serve`), killed at the test's end; `out()` is its stdout and stderr so far. */
export function running(
  t: { teardown(fn: () => unknown): void },
  args: string[],
  options: { nodeArgs?: string[]; env?: Record<string, string>; cwd?: string } = {},
): { proc: ChildProcessWithoutNullStreams; out: () => string } {
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), ...args], {
    cwd: options.cwd,
    env: childEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    proc.kill('SIGKILL')
  })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => {
    out += d
  })
  proc.stderr.on('data', (d: Buffer) => {
    out += d
  })
  return { proc, out: () => out }
}

/** `jwtgate serve -c FILE` as a child (the compiled command), killed at the test's end; resolves with its port once it listens. */
export async function serveChild(t: { teardown(fn: () => unknown): void }, file: string, env: Record<string, string> = {}): Promise<number> {
  const child = running(t, [MAIN, 'serve', '-c', file], { env })
  for (let waited = 0; waited < 20_000; waited += 20) {
    const found = /jwtgate listening on https?:\/\/127\.0\.0\.1:(\d+)/.exec(child.out())
    if (found) return Number(found[1])
    if (child.proc.exitCode !== null) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`jwtgate serve did not listen: ${child.out()}`)
}
