// Runs the `jwtgate` command as a child process, the way users run it, from the compiled
// JavaScript in dist/ that test/support/build.ts writes once before the test files run: a child
// that registered tsx again would spend seconds compiling what every other child compiles too.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { explain, explainArguments, explainExitCode, explainOutput } from '../../src/explain.js'
import { validatePolicy } from '../../src/cli/validate.js'
import { formatProblem, PolicyError } from '../../src/policy/problems.js'
import { eventually, get } from './harness.js'

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
  // Nor the OTEL_* variables of a developer's shell: a test that wants tracing says so in `extra`.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('OTEL_')))
  return { ...env, NODE_OPTIONS: options.join(' '), ...extra }
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

/** `jwtgate serve` of a `workers: N` policy, once every worker listens and the gateway is ready: its proxy and admin URLs. */
export async function servedCluster(t: { teardown(fn: () => unknown): void }, policyFile: string): Promise<{ url: string; admin: string; out: () => string }> {
  const gw = running(t, [MAIN, 'serve', '-c', policyFile])
  await eventually(
    () => `the cluster starts: ${gw.out()}`,
    40_000,
    // Each process writes its lines in batches: the workers' may come after the primary's.
    () => /"all workers listening"/.test(gw.out()) && /jwtgate listening on/.test(gw.out()),
  )
  const url = /jwtgate listening on (\S+?)"/.exec(gw.out())![1]!
  const admin = /jwtgate admin on (\S+?)"/.exec(gw.out())![1]!
  await eventually('ready', 20_000, async () => (await get(`${admin}/readyz`)).status === 200)
  return { url, admin, out: gw.out }
}

export interface ServeChild {
  proc: ChildProcessWithoutNullStreams
  /** Everything it wrote so far, standard output and error together. */
  out(): string
  exited: Promise<number | null>
}

/**
 * `jwtgate serve -c FILE` (the compiled command, or `script` with `nodeArgs`) as a running()
 * child; resolves once its output matches `ready`.
 */
export async function serveChild(
  t: { teardown(fn: () => unknown): void },
  policyFile: string,
  options: { env?: Record<string, string>; ready?: RegExp; script?: string; nodeArgs?: string[]; cwd?: string } = {},
): Promise<ServeChild> {
  const { proc, out } = running(t, [options.script ?? MAIN, 'serve', '-c', policyFile], options)
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  const ready = options.ready ?? /jwtgate listening on \S+?"[\s\S]*jwtgate admin on \S+?"/
  const started = Date.now()
  while (!ready.test(out())) {
    if (Date.now() - started > 40_000) throw new Error(`jwtgate serve did not start: ${out()}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  return { proc, out, exited }
}

/** `jwtgate serve -c FILE` as a child, with or without an admin listener; resolves with the proxy's port once it listens. */
export async function servePort(t: { teardown(fn: () => unknown): void }, file: string, env: Record<string, string> = {}): Promise<number> {
  const listening = /jwtgate listening on https?:\/\/127\.0\.0\.1:(\d+)/
  const child = await serveChild(t, file, { env, ready: listening })
  return Number(listening.exec(child.out())![1])
}
