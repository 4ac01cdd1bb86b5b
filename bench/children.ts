// Child processes of the benchmark: started, waited for until they say where they listen, and
// all killed on the way out, whatever the way out is.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync, truncateSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** Children run from the project root. */
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TAIL = 4000

export interface Service {
  name: string
  pid: number
  /** What the ready function found in the output, e.g. http://127.0.0.1:port */
  url: string
  /** Throws (with the end of its output) when the process is gone. */
  assertAlive(): void
  /** Empties the log file, if the output goes to one. */
  truncateLog(): void
  /** performance.now() when the process was spawned. */
  startedAt: number
}

const live = new Set<ChildProcess>()

/**
 * Spawns a long-running process and resolves once `ready` recognizes a line of its stdout.
 *
 * With `logFile`, stdout and stderr go to that file (appending) and the file is polled. A
 * process that logs every request should get one: a Node parent hands its children
 * non-blocking pipes, and pino, finding such a pipe full, sleeps 100 ms, which would put the
 * parent's scheduling into the child's latency. Without it, the output is drained through pipes
 * for as long as the process lives; either way only its end is kept, for error messages.
 */
export function startService(
  name: string,
  command: string,
  args: string[],
  ready: (line: string) => string | undefined,
  options: { logFile?: string; probe?: () => Promise<string | undefined>; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<Service> {
  const { logFile, probe, timeoutMs = 60_000 } = options
  const fd = logFile === undefined ? undefined : openSync(logFile, 'a')
  const startedAt = performance.now()
  const child = spawn(command, args, { cwd: ROOT, stdio: ['pipe', fd ?? 'pipe', fd ?? 'pipe'], env: { ...process.env, ...options.env } })
  if (fd !== undefined) closeSync(fd)
  live.add(child)
  let piped = ''
  let exit: string | undefined
  const tail = () => (logFile === undefined ? piped : readTail(logFile))
  const output = () => `${name} output:\n${tail().trim() || '(none)'}`

  return new Promise<Service>((resolve, reject) => {
    let started = false // ready, or given up on
    const succeed = (url: string) => {
      finish()
      resolve({
        name,
        pid: child.pid!,
        url,
        startedAt,
        assertAlive() {
          if (exit !== undefined) throw new Error(`${name} exited (${exit})\n${output()}`)
        },
        truncateLog() {
          if (logFile !== undefined) truncateSync(logFile, 0)
        },
      })
    }
    let seen = 0 // lines of output already given to ready()
    const check = (text: string) => {
      const lines = text.split('\n').slice(0, -1) // the last piece is an unfinished line
      for (; seen < lines.length && !started; seen++) {
        const url = ready(lines[seen]!)
        if (url !== undefined) succeed(url)
      }
    }
    let startup = ''
    // With a log file, the file is polled, and the probe too (for when the log level hides the
    // line that says where the process listens).
    let probing = false
    const poll =
      logFile === undefined
        ? undefined
        : setInterval(() => {
            check(readFileSync(logFile, 'utf8'))
            if (!probe || probing || started) return
            probing = true
            void probe().then((url) => {
              probing = false
              if (url !== undefined && !started) succeed(url)
            })
          }, 50)
    const timer = setTimeout(() => {
      finish()
      reject(new Error(`${name} did not start within ${timeoutMs} ms\n${output()}`))
    }, timeoutMs)
    function finish() {
      started = true
      clearInterval(poll)
      clearTimeout(timer)
      startup = ''
    }
    if (logFile === undefined) {
      child.stderr!.on('data', (chunk: Buffer) => (piped = (piped + chunk.toString('utf8')).slice(-TAIL)))
      child.stdout!.on('data', (chunk: Buffer) => {
        piped = (piped + chunk.toString('utf8')).slice(-TAIL)
        if (started) return
        startup += chunk.toString('utf8')
        check(startup)
      })
    }
    child.on('error', (err) => {
      finish()
      reject(new Error(`${name} could not be started: ${err.message}`))
    })
    child.on('exit', (code, signal) => {
      live.delete(child)
      exit = signal ? `signal ${signal}` : `code ${code}`
      if (started) return
      finish()
      reject(new Error(`${name} exited before it was ready (${exit})\n${output()}`))
    })
  })
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-TAIL)
  } catch {
    return ''
  }
}

/** Runs a command to completion, killing it after timeoutMs; resolves with its output. */
export function runCommand(
  command: string,
  args: string[],
  timeoutMs: number,
  env?: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env })
  live.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      live.delete(child)
      reject(err)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      live.delete(child)
      resolve({ code, stdout, stderr })
    })
  })
}

/** SIGTERM to every child still running, SIGKILL to those still there after graceMs. */
export async function killAll(graceMs = 1500): Promise<void> {
  const children = [...live]
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
          child.once('exit', () => {
            clearTimeout(timer)
            resolve()
          })
          child.kill('SIGTERM')
        }),
    ),
  )
  live.clear()
}

/** The last resort, for process.on('exit'), where nothing asynchronous runs any more. */
export function killAllNow(): void {
  for (const child of live) child.kill('SIGKILL')
}
