// HTTP/2 clients for the tests: node:http2 sessions (a real client: nghttp2 frames every byte),
// and raw frames written by hand for what a well-behaved client library refuses to send
// (connection-specific fields, HPACK bombs, CONTINUATION floods, rapid resets).
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import { connect, type Socket } from 'node:net'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface H2Answer {
  status: number
  headers: IncomingHttpHeaders
  body: string
  trailers: IncomingHttpHeaders
  /** The response's HEADERS frame ended the stream (gRPC's Trailers-Only form). */
  headersEndedStream: boolean
}

/** An HTTP/2 session to `url` (http: prior knowledge; https: ALPN h2), closed at teardown. */
export function h2Session(t: Teardown, url: string, options: http2.SecureClientSessionOptions = {}): ClientHttp2Session {
  const session = http2.connect(url, options)
  session.on('error', () => {})
  t.teardown(() => session.destroy())
  return session
}

/** One request on `session`; resolves with the whole answer, rejects on a stream error. */
export function h2Request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string | Buffer): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'GET', ...headers }, { endStream: body === undefined })
    let answer: H2Answer | undefined
    const chunks: Buffer[] = []
    stream.on('response', (h, flags) => {
      answer = { status: Number(h[':status']), headers: h, body: '', trailers: {}, headersEndedStream: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 }
    })
    stream.on('trailers', (h) => {
      if (answer) answer.trailers = h
    })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      if (!answer) return reject(new Error('the stream ended without a response'))
      answer.body = Buffer.concat(chunks).toString('utf8')
      resolve(answer)
    })
    stream.on('error', reject)
    stream.on('close', () => {
      if (!answer) reject(new Error(`stream closed with code ${stream.rstCode}`))
    })
    if (body !== undefined) stream.end(body)
  })
}

// ---- raw frames (RFC 9113 §4.1, §6) ----

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

/** RFC 7541 §5.1: an integer with an N-bit prefix, the first byte's high bits given. */
function hpackInt(value: number, prefixBits: number, high: number): Buffer {
  const max = (1 << prefixBits) - 1
  if (value < max) return Buffer.from([high | value])
  const out = [high | max]
  value -= max
  while (value >= 128) {
    out.push((value % 128) + 128)
    value = Math.floor(value / 128)
  }
  out.push(value)
  return Buffer.from(out)
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1')
  return Buffer.concat([hpackInt(bytes.length, 7, 0), bytes])
}

/** RFC 7541 §6.2.2: a field as a literal, never indexed, no Huffman: exactly the bytes given. */
export function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)])
}

/** RFC 7541 §6.2.1: a literal field added to the peer's dynamic table (index 62 for the newest). */
export function literalIndexed(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)])
}

/** RFC 7541 §6.1: a reference to the table entry at `index`. */
export function indexed(index: number): Buffer {
  return hpackInt(index, 7, 0x80)
}

export function headerBlock(fields: Array<[string, string]>): Buffer {
  return Buffer.concat(fields.map(([n, v]) => literal(n, v)))
}

export interface RawFrame {
  type: number
  flags: number
  streamId: number
  payload: Buffer
}

/**
 * A raw HTTP/2 connection: sends the preface and an empty SETTINGS, acknowledges the server's
 * SETTINGS, and collects the frames the server sends, until it closes.
 */
export class RawH2 {
  readonly frames: RawFrame[] = []
  closed = false
  private buffered = Buffer.alloc(0)
  private readonly socket: Socket

  constructor(t: Teardown, port: number) {
    this.socket = connect(port, '127.0.0.1')
    this.socket.on('error', () => {})
    this.socket.on('close', () => {
      this.closed = true
    })
    this.socket.on('data', (chunk: Buffer) => this.read(chunk))
    this.socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]))
    t.teardown(() => this.socket.destroy())
  }

  send(...frames: Buffer[]): boolean {
    if (this.socket.destroyed) return false
    return this.socket.write(Buffer.concat(frames))
  }

  /** The GOAWAY the server sent, with its error code, if any. */
  goaway(): { lastStreamId: number; code: number } | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY)
    return f && { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) }
  }

  /** RST_STREAM codes the server sent, by stream. */
  resets(): Map<number, number> {
    return new Map(this.frames.filter((x) => x.type === FRAME.RST_STREAM).map((x) => [x.streamId, x.payload.readUInt32BE(0)]))
  }

  /** The :status of the server's answer on a stream (its first header block), if any. */
  status(streamId: number): number | undefined {
    const f = this.frames.find((x) => x.type === FRAME.HEADERS && x.streamId === streamId)
    return f && statusOf(f.payload)
  }

  /** Streams the server answered with a HEADERS frame. */
  answered(): Set<number> {
    return new Set(this.frames.filter((x) => x.type === FRAME.HEADERS).map((x) => x.streamId))
  }

  private read(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk])
    while (this.buffered.length >= 9) {
      const length = this.buffered.readUIntBE(0, 3)
      if (this.buffered.length < 9 + length) return
      const f: RawFrame = {
        type: this.buffered[3]!,
        flags: this.buffered[4]!,
        streamId: this.buffered.readUInt32BE(5) & 0x7fffffff,
        payload: this.buffered.subarray(9, 9 + length),
      }
      this.buffered = this.buffered.subarray(9 + length)
      this.frames.push(f)
      if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) this.send(frame(FRAME.SETTINGS, FLAG.ACK, 0))
    }
  }
}

/** The request fields every raw request needs, then `extra`. */
export function requestFields(path: string, extra: Array<[string, string]> = [], method = 'GET'): Array<[string, string]> {
  return [[':method', method], [':scheme', 'http'], [':authority', '127.0.0.1'], [':path', path], ...extra]
}

// RFC 7541 Appendix A: the static table's :status entries.
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 }
// RFC 7541 Appendix B: the Huffman codes of the digits ('0'-'2': 5 bits, '3'-'9': 6 bits).
const DIGIT_CODES: Array<[number, number]> = [0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f].map((code, d) => [code, d < 3 ? 5 : 6])

/**
 * The :status of a server's first header block, which nghttp2 writes first: a static table
 * reference, or a literal with the name :status (index 8) and a three-digit value, raw or Huffman coded.
 */
export function statusOf(block: Buffer): number | undefined {
  const first = block[0]!
  if (first & 0x80) return STATIC_STATUS[first & 0x7f]
  const nameIndex = first & (first & 0x40 ? 0x3f : 0x0f)
  if (nameIndex < 8 || nameIndex > 14) return undefined
  const huffman = (block[1]! & 0x80) !== 0
  const length = block[1]! & 0x7f
  const value = block.subarray(2, 2 + length)
  if (!huffman) return Number(value.toString('latin1'))
  let bits = ''
  for (const byte of value) bits += byte.toString(2).padStart(8, '0')
  let digits = ''
  while (digits.length < 3) {
    const found = DIGIT_CODES.findIndex(([code, n]) => bits.length >= n && parseInt(bits.slice(0, n), 2) === code)
    if (found < 0) return undefined
    digits += String(found)
    bits = bits.slice(DIGIT_CODES[found]![1])
  }
  return Number(digits)
}
