// FrameCursor follows WebSocket frame boundaries (RFC 6455 §5.2) in a byte stream cut into
// arbitrary chunks, so that the gateway's own close frame never lands inside another frame.
import t from 'tap'
import { FrameCursor } from '../../src/gateway/websocket.js'

/** A frame with a payload of `length` bytes, its length in the 7-, 16- or 64-bit form it needs. */
function frame(length: number, masked: boolean): Buffer {
  const mask = masked ? 0x80 : 0
  const header =
    length < 126
      ? Buffer.from([0x82, mask | length])
      : length < 65536
        ? Buffer.from([0x82, mask | 126, length >> 8, length & 0xff])
        : Buffer.concat([
            Buffer.from([0x82, mask | 127]),
            (() => {
              const b = Buffer.alloc(8)
              b.writeBigUInt64BE(BigInt(length))
              return b
            })(),
          ])
  return Buffer.concat([header, masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0), Buffer.alloc(length, 7)])
}

t.test('the cursor is at a boundary exactly where a frame ends, however the stream is cut', async (t) => {
  let seed = 11
  const random = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed % n
  }
  const lengths = [0, 1, 125, 126, 200, 65535, 65536, 70000]
  let checked = 0
  for (let round = 0; round < 40; round++) {
    const frames = Array.from({ length: 6 }, () => frame(lengths[random(lengths.length)]!, random(2) === 1))
    const ends = new Set<number>()
    let at = 0
    for (const f of frames) ends.add((at += f.length))
    const stream = Buffer.concat(frames)
    const cursor = new FrameCursor()
    // Chunks of 1 to 20 bytes sometimes (headers split anywhere), of up to 70 KB otherwise.
    for (let offset = 0; offset < stream.length; ) {
      const size = 1 + (random(3) === 0 ? random(20) : random(70_000))
      const next = Math.min(stream.length, offset + size)
      cursor.feed(stream.subarray(offset, next))
      offset = next
      t.equal(cursor.atBoundary, ends.has(offset), `round ${round}, after byte ${offset}`)
      checked++
    }
  }
  t.ok(checked > 200, `${checked} cuts checked`)
})
