// Raw HTTP/1.1 over a socket for the hardening tests: the bytes go out exactly as written
// (no client-side normalization of paths, header names or framing), and every response the
// server sends back on the connection is parsed, so a smuggled second request shows up as a
// second response.
import { connect } from 'node:net'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

export interface Exchange {
  responses: RawResponse[]
  /** The server closed the connection (rather than the exchange ending when it went quiet). */
  closed: boolean
}

/**
 * Writes `bytes`, then collects what the server sends until it closes the connection or has
 * been quiet for `idleMs`. A keep-alive connection therefore costs `idleMs`. With `done`, the
 * exchange ends as soon as `done` says the bytes received are enough, and quiet ends nothing:
 * a loaded machine can take longer than any guessed quiet time to answer.
 */
export function exchange(port: number, bytes: string | Buffer, idleMs = 300, done?: (received: string) => boolean): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    let closed = false
    let finished = false
    let timer: NodeJS.Timeout | undefined
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      clearTimeout(limit)
      socket.destroy()
      resolve({ responses: parseResponses(data), closed })
    }
    const arm = () => {
      if (done) return
      clearTimeout(timer)
      timer = setTimeout(finish, idleMs)
    }
    // A hard limit, so a server that trickles bytes cannot hang the test.
    const limit = setTimeout(() => {
      if (finished) return
      finished = true
      socket.destroy()
      reject(new Error(`raw exchange took more than 10 s; received: ${data.slice(0, 200)}`))
    }, 10_000)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      data += d
      if (done?.(data)) finish()
      else arm()
    })
    // The server may reset the connection after answering 400/431 before reading everything.
    socket.on('error', () => {})
    socket.on('close', () => {
      closed = true
      finish()
    })
    socket.write(bytes)
    arm()
  })
}

export interface RawRequest {
  method?: string
  target: string
  /** Sent in this order, exactly as written. Host and Connection are added unless present. */
  headers?: ReadonlyArray<readonly [string, string]>
  body?: string
}

/**
 * One request; the first response, read until its framing (Content-Length, the last chunk, or
 * the server closing) says it is whole. Status 0 when the server closed without answering.
 */
export async function send(port: number, request: RawRequest): Promise<RawResponse> {
  const headers = [...(request.headers ?? [])]
  const has = (name: string) => headers.some(([n]) => n.toLowerCase() === name)
  if (!has('host')) headers.unshift(['Host', '127.0.0.1'])
  if (!has('connection')) headers.push(['Connection', 'close'])
  if (request.body !== undefined && !has('content-length') && !has('transfer-encoding')) {
    headers.push(['Content-Length', String(Buffer.byteLength(request.body))])
  }
  const text = `${request.method ?? 'GET'} ${request.target} HTTP/1.1\r\n` + headers.map(([n, v]) => `${n}: ${v}\r\n`).join('') + '\r\n' + (request.body ?? '')
  const { responses } = await exchange(port, text, undefined, firstResponseWhole)
  return responses[0] ?? { status: 0, headers: {}, body: '' }
}

/** The JSON body's `error` field, or undefined when the body is not JSON. */
export function errorOf(response: RawResponse): string | undefined {
  try {
    return (JSON.parse(response.body) as { error?: string }).error
  } catch {
    return undefined
  }
}

/** How many bytes the first response takes when `raw` holds all of it; undefined while it does not (or its end is the connection's close). */
export function firstResponseLength(raw: string): number | undefined {
  const end = raw.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const head = raw.slice(0, end).toLowerCase()
  const bodyStart = end + 4
  const length = /\r\ncontent-length: *(\d+)/.exec(head)
  if (length) return raw.length >= bodyStart + Number(length[1]) ? bodyStart + Number(length[1]) : undefined
  if (/\r\ntransfer-encoding: *chunked/.test(head)) {
    let i = bodyStart
    for (;;) {
      const lineEnd = raw.indexOf('\r\n', i)
      if (lineEnd < 0) return undefined
      const size = parseInt(raw.slice(i, lineEnd), 16)
      // The last chunk, then (no trailers here) the empty line.
      if (size === 0) return raw.length >= lineEnd + 4 ? lineEnd + 4 : undefined
      i = lineEnd + 2 + size + 2
      if (i > raw.length) return undefined
    }
  }
  // 204 and 304 have no body; any other answer without a length ends with the connection.
  return /^http\/1\.[01] (204|304)/.test(head) ? bodyStart : undefined
}

/** For `exchange`: done once the first response is whole. */
export const firstResponseWhole = (received: string): boolean => firstResponseLength(received) !== undefined

export function parseResponses(raw: string): RawResponse[] {
  const out: RawResponse[] = []
  let i = 0
  while (i < raw.length) {
    const end = raw.indexOf('\r\n\r\n', i)
    if (end < 0) break
    const head = raw.slice(i, end).split('\r\n')
    const status = Number(head[0]!.split(' ')[1])
    const headers: Record<string, string> = {}
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
    }
    i = end + 4
    let body = ''
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length'])
      body = raw.slice(i, i + n)
      i += n
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', i)
        if (lineEnd < 0) {
          i = raw.length
          break
        }
        const size = parseInt(raw.slice(i, lineEnd), 16)
        i = lineEnd + 2
        if (!size) {
          i += 2
          break
        }
        body += raw.slice(i, i + size)
        i += size + 2
      }
    } else {
      body = raw.slice(i)
      i = raw.length
    }
    out.push({ status, headers, body })
  }
  return out
}
