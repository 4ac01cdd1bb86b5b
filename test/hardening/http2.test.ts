// HTTP/2 under attack, with frames written by hand (test/support/h2.ts): what RFC 9113 §8.2.2
// and §8.3 forbid, the stream limit, oversized and bomb-compressed header lists, CONTINUATION
// floods and rapid reset (CVE-2023-44487). Each attack is checked on both sides: what the
// client got (a stream reset or a GOAWAY, with its code) and what the upstream recorded
// (nothing), and the gateway still serves a well-behaved client afterwards.
import t from 'tap'
import { constants } from 'node:http2'
import { H2_MAX_CONCURRENT_STREAMS, H2_STREAM_RESET_BURST, H2_STREAM_RESET_RATE } from '../../src/gateway/listeners.js'
import { startEchoUpstream } from '../../src/devkit/echo_upstream.js'
import { eventually, gateway, policy, issuer } from '../support/harness.js'
import { FLAG, FRAME, RawH2, frame, headerBlock, h2Request, h2Session, indexed, literal, literalIndexed, requestFields } from '../support/h2.js'

const ROUTES = `
  - { path: /public/**, upstream: orders, auth: none }
  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }
`
const { NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_INTERNAL_ERROR } = constants

t.test('HTTP/2 attacks on an h2c listener', async (t) => {
  const idp = await issuer(t)
  // An upstream that takes header sections up to 64 KiB, so the gateway's limit is the one seen.
  const up = await startEchoUpstream({ maxHeaderSize: 65_536 })
  t.teardown(() => up.close())
  const yaml = policy({ issuer: idp, upstream: up, routes: ROUTES }).replace('port: 0 }', 'port: 0, protocols: [http1, h2c] }')
  const gw = await gateway(t, yaml)

  /** A well-behaved client still gets its answer, on a new connection. */
  const stillServes = async (t: { equal(a: unknown, b: unknown, m: string): void; teardown(fn: () => unknown): void }) => {
    const res = await h2Request(h2Session(t, gw.url), { ':path': '/public/after' })
    t.equal(res.status, 200, 'the gateway still serves')
  }

  t.test('connection-specific fields and TE other than trailers are refused before any request exists (RFC 9113 §8.2.2)', async (t) => {
    const before = up.received.length
    const raw = new RawH2(t, gw.port)
    const bad: Array<[string, string]> = [
      ['connection', 'keep-alive'],
      ['keep-alive', 'timeout=5'],
      ['proxy-connection', 'keep-alive'],
      ['transfer-encoding', 'chunked'],
      ['upgrade', 'websocket'],
      ['te', 'gzip'],
    ]
    for (const [i, field] of bad.entries())
      raw.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, headerBlock(requestFields('/public/x', [field]))))
    await eventually('a reset for each stream', 5000, () => raw.resets().size === bad.length || raw.closed)
    for (const [i, field] of bad.entries()) t.equal(raw.resets().get(1 + 2 * i), NGHTTP2_PROTOCOL_ERROR, `${field[0]}: ${field[1]}: RST_STREAM(PROTOCOL_ERROR)`)
    t.equal(raw.answered().size, 0, 'no stream got an answer')
    t.equal(up.received.length, before, 'nothing reached the upstream')
    // te: trailers is the one TE HTTP/2 allows.
    const ok = new RawH2(t, gw.port)
    ok.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock(requestFields('/public/te', [['te', 'trailers']]))))
    await eventually('an answer', 5000, () => ok.answered().has(1))
    t.equal(up.received.at(-1)!.url, '/public/te')
  })

  t.test('pseudo-header fields missing, repeated, unknown, after a regular field, or a field name in upper case: refused (RFC 9113 §8.3)', async (t) => {
    const before = up.received.length
    const raw = new RawH2(t, gw.port)
    const blocks: Array<Array<[string, string]>> = [
      [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':authority', '127.0.0.1'],
      ],
      [...requestFields('/public/a'), [':path', '/api/b']],
      [...requestFields('/public/a'), [':protocol', 'websocket']],
      [
        [':method', 'GET'],
        [':scheme', 'http'],
        ['x-early', '1'],
        [':path', '/public/a'],
        [':authority', '127.0.0.1'],
      ],
      [...requestFields('/public/a'), ['X-Upper', '1']],
      [...requestFields('/public/a'), [':status', '200']],
    ]
    for (const [i, fields] of blocks.entries()) raw.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, headerBlock(fields)))
    await eventually('every stream refused', 5000, () => raw.resets().size === blocks.length || raw.closed)
    for (let i = 0; i < blocks.length; i++) t.equal(raw.resets().get(1 + 2 * i), NGHTTP2_PROTOCOL_ERROR, `block ${i}: RST_STREAM(PROTOCOL_ERROR)`)
    t.equal(raw.answered().size, 0)
    t.equal(up.received.length, before)
  })

  t.test(`at most ${H2_MAX_CONCURRENT_STREAMS} concurrent streams; a client that opens more loses the connection`, async (t) => {
    const raw = new RawH2(t, gw.port)
    await eventually("the server's SETTINGS", 5000, () => raw.frames.some((f) => f.type === FRAME.SETTINGS))
    const settings = raw.frames.find((f) => f.type === FRAME.SETTINGS && !(f.flags & FLAG.END_STREAM))!
    const advertised = new Map<number, number>()
    for (let i = 0; i + 6 <= settings.payload.length; i += 6) advertised.set(settings.payload.readUInt16BE(i), settings.payload.readUInt32BE(i + 2))
    t.equal(advertised.get(3), H2_MAX_CONCURRENT_STREAMS, 'SETTINGS_MAX_CONCURRENT_STREAMS is advertised')
    // POSTs whose bodies never end keep their streams open.
    for (let i = 0; i <= H2_MAX_CONCURRENT_STREAMS; i++) {
      raw.send(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1 + 2 * i, headerBlock(requestFields('/public/held', [], 'POST'))))
    }
    const last = 1 + 2 * H2_MAX_CONCURRENT_STREAMS
    await eventually('the stream over the limit refused', 5000, () => raw.resets().has(last) || raw.goaway() !== undefined)
    // After the SETTINGS were acknowledged, a stream over the limit is the client breaking the
    // protocol: nghttp2 answers GOAWAY(PROTOCOL_ERROR) naming the last stream it took.
    const goaway = raw.goaway()
    if (goaway) {
      t.equal(goaway.code, NGHTTP2_PROTOCOL_ERROR, 'GOAWAY(PROTOCOL_ERROR)')
      t.equal(goaway.lastStreamId, last - 2, `the last stream taken is the ${H2_MAX_CONCURRENT_STREAMS}th`)
    } else {
      t.equal(raw.resets().get(last), NGHTTP2_REFUSED_STREAM, 'or RST_STREAM(REFUSED_STREAM) for the one over the limit')
    }
  })

  t.test('a header list over limits.max_header_bytes, or an HPACK bomb that decodes past it, is refused and forwards nothing', async (t) => {
    const before = up.received.length
    // 40 KB of fields in frames of the default maximum size (16 KiB): HEADERS, then CONTINUATIONs.
    const big = new RawH2(t, gw.port)
    const bigBlock = headerBlock(requestFields('/public/big', [['x-big', 'a'.repeat(40_000)]]))
    const parts = [bigBlock.subarray(0, 16_000), bigBlock.subarray(16_000, 32_000), bigBlock.subarray(32_000)]
    big.send(
      frame(FRAME.HEADERS, FLAG.END_STREAM, 1, parts[0]),
      frame(FRAME.CONTINUATION, 0, 1, parts[1]),
      frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, parts[2]),
    )
    // A 4,000-byte value put in the dynamic table once, then referenced 100 times: ~4 KB on the
    // wire, 400 KB decoded.
    const bomb = new RawH2(t, gw.port)
    const block = Buffer.concat([
      headerBlock(requestFields('/public/bomb')),
      literalIndexed('x-bomb', 'b'.repeat(4000)),
      ...Array.from({ length: 100 }, () => indexed(62)),
    ])
    t.ok(block.length < 5000, `the bomb is ${block.length} bytes on the wire`)
    bomb.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, block))
    // More fields than allowed, each small.
    const many = new RawH2(t, gw.port)
    many.send(
      frame(
        FRAME.HEADERS,
        FLAG.END_HEADERS | FLAG.END_STREAM,
        1,
        headerBlock(
          requestFields(
            '/public/many',
            Array.from({ length: 200 }, (_, i) => [`x-f${i}`, 'v'] as [string, string]),
          ),
        ),
      ),
    )
    // 24 KB, under limits.max_header_bytes (32 KiB) but over Node's own HTTP/2 limit: room for a 16 KiB token.
    const fits = new RawH2(t, gw.port)
    const fitsBlock = headerBlock(requestFields('/public/fits', [['x-fits', 'f'.repeat(24_000)]]))
    fits.send(
      frame(FRAME.HEADERS, FLAG.END_STREAM, 1, fitsBlock.subarray(0, 16_000)),
      frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, fitsBlock.subarray(16_000)),
    )
    await eventually(
      'answers',
      5000,
      () =>
        (big.status(1) ?? big.resets().get(1) ?? big.goaway()) !== undefined &&
        (bomb.status(1) ?? bomb.resets().get(1) ?? bomb.goaway()) !== undefined &&
        many.resets().has(1) &&
        fits.status(1) !== undefined,
    )
    t.equal(fits.status(1), 200, '24 KB of fields fit in limits.max_header_bytes')
    t.equal(up.received.at(-1)?.headers['x-fits']?.length, 24_000)
    t.equal(big.status(1), 431, '40 KB of fields: 431, as HTTP/1.1 answers')
    t.equal(bomb.status(1), 431, 'the HPACK bomb counts at its decoded size: 431, sent before SETTINGS were acknowledged')
    t.equal(many.resets().get(1), constants.NGHTTP2_ENHANCE_YOUR_CALM, '200 fields: RST_STREAM(ENHANCE_YOUR_CALM)')
    t.equal(up.received.length, before + 1, 'nothing else reached the upstream')
    await stillServes(t)
  })

  t.test('a CONTINUATION flood closes the connection long before it ends', async (t) => {
    const before = up.received.length
    const raw = new RawH2(t, gw.port)
    raw.send(frame(FRAME.HEADERS, 0, 1, headerBlock(requestFields('/public/flood'))))
    let sent = 0
    // Each frame one small field; END_HEADERS never comes.
    for (; sent < 20_000 && !raw.closed && raw.goaway() === undefined; sent++) {
      if (!raw.send(frame(FRAME.CONTINUATION, 0, 1, literal(`x-c${sent % 50}`, 'v')))) await new Promise((r) => setTimeout(r, 5))
    }
    await eventually('GOAWAY or close', 5000, () => raw.closed || raw.goaway() !== undefined)
    t.ok(raw.closed || raw.goaway(), `the connection ended (after ${sent} CONTINUATION frames were written)`)
    t.equal(up.received.length, before)
    await stillServes(t)
  })

  t.test(`rapid reset: streams opened and reset at once end the connection after ${H2_STREAM_RESET_BURST}`, async (t) => {
    const before = up.received.length
    const raw = new RawH2(t, gw.port)
    const total = 2000
    const started = Date.now()
    let written = 0
    for (; written < total && !raw.closed && raw.goaway() === undefined; written++) {
      const id = 1 + 2 * written
      const cancel = Buffer.alloc(4)
      cancel.writeUInt32BE(constants.NGHTTP2_CANCEL)
      raw.send(
        frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock(requestFields('/public/reset'))),
        frame(FRAME.RST_STREAM, 0, id, cancel),
      )
      if (written % 50 === 49) await new Promise((r) => setImmediate(r))
    }
    await eventually('GOAWAY', 5000, () => raw.goaway() !== undefined || raw.closed)
    // nghttp2's rate limit (session_update_stream_reset_ratelim) says INTERNAL_ERROR.
    const goaway = raw.goaway()
    t.equal(goaway?.code, NGHTTP2_INTERNAL_ERROR, 'GOAWAY(INTERNAL_ERROR)')
    const taken = ((goaway?.lastStreamId ?? 0) + 1) / 2
    // The bucket refills at the rate while the attack lasts, a second's worth at each turn of the
    // clock's second (nghttp2_ratelim counts whole seconds): one more turn than the time elapsed.
    const allowed = H2_STREAM_RESET_BURST + (Math.ceil((Date.now() - started) / 1000) + 1) * H2_STREAM_RESET_RATE + 1
    t.ok(taken <= allowed, `the session took ${taken} streams, at most ${allowed} (written: ${written} of ${total} before the GOAWAY was read)`)
    const reached = up.received.length - before
    t.ok(reached <= taken, `the upstream saw ${reached} of them`)
    await stillServes(t)
  })
})
