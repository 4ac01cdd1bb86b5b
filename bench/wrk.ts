// Runs wrk once against a URL with bench/tokens.lua and reads the JSON line its done() prints.
import { fileURLToPath } from 'node:url'
import { runCommand } from './children.js'

const SCRIPT = fileURLToPath(new URL('./tokens.lua', import.meta.url))

export interface WrkRun {
  requests: number
  seconds: number
  rps: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** Socket errors and responses with a status >= 400; a run with any is suspect. */
  errors: { connect: number; read: number; write: number; timeout: number; status: number }
}

export interface WrkOptions {
  wrk: string
  url: string
  connections: number
  durationS: number
  /** A file of tokens, one a line; undefined sends no Authorization header. */
  tokensFile?: string
  /** Run wrk on this CPU (through taskset). */
  cpu?: number
  /** Each connection waits this long after a response before its next request (paced load). */
  delayMs?: number
  /** Extra request headers, `name: value` (`Connection: close`: a new connection per request). */
  headers?: string[]
}

export async function runWrk(o: WrkOptions): Promise<WrkRun> {
  // One thread: wrk gets one CPU, and a second thread on it would only add switches.
  const headers = (o.headers ?? []).flatMap((h) => ['-H', h])
  const args = ['-t1', `-c${o.connections}`, `-d${o.durationS}s`, '--timeout', '5s', '--latency', ...headers, '-s', SCRIPT, o.url, '--', o.tokensFile ?? '-']
  const [command, argv] = o.cpu === undefined ? [o.wrk, args] : ['taskset', ['-c', String(o.cpu), o.wrk, ...args]]
  const { code, stdout, stderr } = await runCommand(command, argv, (o.durationS + 30) * 1000, o.delayMs ? { WRK_DELAY_MS: String(o.delayMs) } : undefined)
  const line = stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '))
  if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}) against ${o.url}\n${stdout}\n${stderr}`)
  const r = JSON.parse(line.slice('BENCH_JSON '.length)) as {
    requests: number
    duration_us: number
    p50_us: number
    p99_us: number
    max_us: number
    errors: WrkRun['errors']
  }
  const seconds = r.duration_us / 1e6
  return { requests: r.requests, seconds, rps: r.requests / seconds, p50Ms: r.p50_us / 1000, p99Ms: r.p99_us / 1000, maxMs: r.max_us / 1000, errors: r.errors }
}
