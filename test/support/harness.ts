// Test harness: real servers on 127.0.0.1 only. A dev issuer serving its JWKS, an echo upstream
// recording what reached it, and the gateway started from a YAML file written for the test.
import { request as httpRequest } from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { startDevIssuer, type DevIssuer, type KeySpec } from '../../src/devkit/dev_issuer.js'
import { startEchoUpstream, type EchoUpstream } from '../../src/devkit/echo_upstream.js'
import { createLogger } from '../../src/log.js'
import { PolicyError } from '../../src/policy/problems.js'
import { loadPolicy, startGateway, type RunningGateway } from '../../src/server.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export function tempFile(name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'jwtgate-test-'))
  const file = path.join(dir, name)
  writeFileSync(file, text)
  return file
}

/** Collects the gateway's JSON log lines. */
export class LogCapture extends Writable {
  lines: Array<Record<string, unknown>> = []
  text = ''
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    const s = chunk.toString()
    this.text += s
    for (const line of s.split('\n')) if (line.trim()) this.lines.push(JSON.parse(line) as Record<string, unknown>)
    done()
  }
}

export async function issuer(t: Teardown, keys?: KeySpec[]): Promise<DevIssuer> {
  const i = await startDevIssuer({ keys })
  t.teardown(() => i.close())
  return i
}

export async function upstream(t: Teardown): Promise<EchoUpstream> {
  const u = await startEchoUpstream()
  t.teardown(() => u.close())
  return u
}

export async function gateway(t: Teardown, yaml: string, env: Record<string, string> = {}): Promise<RunningGateway & { logs: LogCapture }> {
  const logs = new LogCapture()
  const g = await startGateway({
    policyFile: tempFile('policy.yaml', yaml),
    env: { ...process.env, ...env },
    logDestination: logs,
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
  })
  t.teardown(() => g.close())
  return Object.assign(g, { logs })
}

/** The route most tests need, for `policy()`: everything under /api/ wants a token from idp. */
export const API_ROUTE = '  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }'

/** A policy with one JWKS issuer, one upstream and the given routes (YAML list items). */
export function policy(opts: { issuer: DevIssuer; upstream: EchoUpstream; routes: string; extra?: string; issuerExtra?: string; audiences?: string }): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp:
    issuer: ${opts.issuer.url}
    jwks_uri: ${opts.issuer.jwksUri}
    audiences: ${opts.audiences ?? '[orders-api]'}
    algorithms: [RS256, ES256, PS256, ES384, EdDSA]
    clock_skew: 5s
${opts.issuerExtra ?? ''}
upstreams:
  orders: { url: "${opts.upstream.url}", timeout: 2s }
identity_headers:
  x-user-id: sub
  x-user-roles: roles
${opts.extra ?? ''}
routes:
${opts.routes}
`
}

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Sends bytes exactly as written: fetch and http.request normalise paths like /%2e%2e/ on the
 * client side, which would hide exactly what these tests check.
 */
export function rawRequest(port: number, text: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      data += d
    })
    socket.on('error', reject)
    socket.on('end', () => resolve(parseResponse(data)))
    socket.setTimeout(5000, () => {
      socket.destroy()
      reject(new Error('raw request timed out'))
    })
    socket.write(text)
  })
}

export function rawGet(port: number, target: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  const all = { Host: '127.0.0.1', Connection: 'close', ...headers }
  const lines = [`GET ${target} HTTP/1.1`, ...Object.entries(all).map(([k, v]) => `${k}: ${v}`)]
  return rawRequest(port, lines.join('\r\n') + '\r\n\r\n')
}

function parseResponse(data: string): RawResponse {
  const split = data.indexOf('\r\n\r\n')
  const head = data.slice(0, split).split('\r\n')
  const status = Number(head[0]!.split(' ')[1])
  const headers: Record<string, string> = {}
  for (const line of head.slice(1)) {
    const i = line.indexOf(':')
    headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim()
  }
  let body = data.slice(split + 4)
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body)
  return { status, headers, body }
}

function dechunk(body: string): string {
  let out = ''
  let i = 0
  for (;;) {
    const lineEnd = body.indexOf('\r\n', i)
    if (lineEnd < 0) return out
    const size = parseInt(body.slice(i, lineEnd), 16)
    if (!size) return out
    out += body.slice(lineEnd + 2, lineEnd + 2 + size)
    i = lineEnd + 2 + size + 2
  }
}

/** GET through the gateway with fetch, returning status, headers and parsed JSON body. */
export async function get(url: string, headers: Record<string, string> = {}, init: RequestInit = {}): Promise<{ status: number; headers: Headers; json: any }> {
  const res = await fetch(url, { ...init, headers })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { status: res.status, headers: res.headers, json }
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The problems loading a policy text reports, as `line:col message`; empty when it loads. */
export function policyProblems(yaml: string): string[] {
  try {
    const loaded = loadPolicy(tempFile('policy.yaml', yaml), createLogger('silent'))
    for (const i of loaded.issuers.values()) i.stop()
    return []
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    return err.problems.map((p) => `${p.line}:${p.col} ${p.message}`)
  }
}

/**
 * Polls `check` every 20 ms until it holds, and returns how many ms that took. Throws, saying
 * what it waited for, when it has not held within `withinMs`: the test fails there. The one way
 * the tests wait for something that happens in the background.
 */
export async function eventually(what: string | (() => string), withinMs: number, check: () => boolean | Promise<boolean>): Promise<number> {
  const started = Date.now()
  for (;;) {
    if (await check()) return Date.now() - started
    if (Date.now() - started > withinMs) throw new Error(`not within ${withinMs} ms: ${typeof what === 'string' ? what : what()}`)
    await sleep(20)
  }
}

/** A loopback port nothing listens on: the upstream of a route whose upstream is down. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * One request on a connection of its own (no keep-alive agent), so that with `workers: N` the
 * kernel or the primary may hand it to any worker; bounded by 5 s.
 */
export function fresh(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.setTimeout(5000, () => req.destroy(new Error(`${url} timed out`)))
    req.on('error', reject)
    req.end()
  })
}
