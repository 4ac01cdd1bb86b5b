// Runs h2load (nghttp2's load generator, Debian's nghttp2-client) once for the HTTP/2 rows, with
// unary gRPC-shaped calls, and reads its summary and its per-request log into wrk.ts's shape.
// Why h2load: it is nghttp2's own client, one of HTTP/2's reference implementations, written in C,
// and keeps many streams open per connection (-m) as gRPC clients do; wrk speaks HTTP/1.1 only,
// and a Node load generator (grpc-js, autocannon) would take more of CPU 0 than the proxy it loads.
// h2load sends one header set for every request, but cycles through a list of URLs (-i): the
// rotating-token row carries its token in the query (the route reads `?access_token=`).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http2 from 'node:http2'
import os from 'node:os'
import path from 'node:path'
import { runCommand } from './children.js'
import { median } from './support.js'
import type { WrkRun } from './wrk.js'

// A gRPC message (no compression, length 7: a protobuf string field "hello"), as a client sends it.
export const GRPC_MESSAGE = Buffer.from([0, 0, 0, 0, 7, 0x0a, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f])
/** What every call carries, as a gRPC client sends it. */
export const GRPC_HEADERS = ['content-type: application/grpc', 'te: trailers']

export interface H2loadOptions {
  h2load: string
  /** The first URL (scheme, host and port for all) */
  url: string
  /** A file of URLs, one a line, used in turn by each connection; instead of `url`'s path. */
  urlsFile?: string
  connections: number
  /** Concurrent streams per connection. */
  streams: number
  durationS: number
  headers: string[]
  cpu?: number
}

export async function runH2load(o: H2loadOptions): Promise<WrkRun> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jwtgate-h2load-'))
  try {
    const body = path.join(dir, 'message.bin')
    const log = path.join(dir, 'requests.tsv')
    writeFileSync(body, GRPC_MESSAGE)
    // No --warm-up-time: the processes are primed, and CPU time is read over the whole run.
    const args = [
      '-D',
      String(o.durationS),
      '-c',
      String(o.connections),
      '-m',
      String(o.streams),
      '-d',
      body,
      '--log-file',
      log,
      ...[...GRPC_HEADERS, ...o.headers].flatMap((h) => ['-H', h]),
      ...(o.urlsFile ? ['-i', o.urlsFile] : [o.url]),
    ]
    const [command, argv] = o.cpu === undefined ? [o.h2load, args] : ['taskset', ['-c', String(o.cpu), o.h2load, ...args]]
    const { code, stdout, stderr } = await runCommand(command, argv, (o.durationS + 30) * 1000)
    const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout)
    const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout)
    const finished = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(stdout)
    if (code !== 0 || !counts || !codes || !finished) throw new Error(`h2load failed (exit ${code}) against ${o.url}\n${stdout}\n${stderr}`)
    const seconds = Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1)
    const requests = Number(counts[3])
    // Each line: start (µs since the epoch), status, µs until the end of the answer.
    const micros = readFileSync(log, 'utf8')
      .split('\n')
      .flatMap((line) => {
        const us = Number(line.split('\t')[2])
        return line && Number.isFinite(us) ? [us] : []
      })
      .sort((a, b) => a - b)
    const at = (q: number) => (micros.length ? micros[Math.min(micros.length - 1, Math.floor(q * micros.length))]! / 1000 : Number.NaN)
    return {
      requests,
      seconds,
      rps: requests / seconds,
      p50Ms: micros.length ? median(micros) / 1000 : Number.NaN,
      p99Ms: at(0.99),
      maxMs: at(1),
      // A refused gRPC call is a 200 with grpc-status in its trailers, which h2load does not read:
      // the priming checks grpc-status, the runs the HTTP status and the stream errors.
      errors: {
        connect: 0,
        read: Number(counts[6]),
        write: 0,
        timeout: Number(counts[7]),
        status: Number(codes[3]) + Number(codes[4]) + Number(codes[5]),
      },
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Makes unary gRPC calls on one node:http2 session, `concurrency` at a time, and returns what
 * went wrong with each that did not end with HTTP 200 and grpc-status 0 (the priming's check:
 * h2load sees only the HTTP status).
 */
export async function grpcCalls(url: string, calls: Array<{ path: string; headers: Record<string, string> }>, concurrency: number): Promise<string[]> {
  const session = http2.connect(url)
  session.on('error', () => {})
  const failures: string[] = []
  const call = (c: (typeof calls)[number]) =>
    new Promise<void>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': c.path, 'content-type': 'application/grpc', te: 'trailers', ...c.headers })
      let status = 0
      let grpcStatus: string | undefined
      stream.on('response', (h) => {
        status = Number(h[':status'])
        grpcStatus = h['grpc-status'] as string | undefined
      })
      stream.on('trailers', (t) => (grpcStatus = t['grpc-status'] as string | undefined))
      stream.resume()
      stream.on('close', () => {
        if (status !== 200 || grpcStatus !== '0') failures.push(`HTTP ${status}, grpc-status ${grpcStatus} (rst ${stream.rstCode})`)
        resolve()
      })
      stream.end(GRPC_MESSAGE)
    })
  let next = 0
  const worker = async () => {
    while (next < calls.length) await call(calls[next++]!)
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
  } finally {
    session.close()
  }
  return failures
}
