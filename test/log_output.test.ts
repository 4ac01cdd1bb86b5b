// The log's batched output: whole lines in order, writes no longer than a batch, a slow reader
// bounded by dropping (and saying so), a failing descriptor survived.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { BatchedOutput } from '../src/log_output.js'

const dir = fs.mkdtempSync(path.join(tmpdir(), 'jwtgate-log-output-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

/** Resolves once check() holds, polling every 10 ms, for at most 5 s. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10))
  if (!check()) throw new Error(`timed out waiting for ${what}`)
}

const line = (i: number, pad = 20) => `{"n":${i},"pad":"${'x'.repeat(pad)}","é":"ü"}\n`

t.test('lines reach the descriptor whole and in order, each write at most a batch long', async (t) => {
  const file = path.join(dir, 'order.log')
  const fd = fs.openSync(file, 'w')
  t.teardown(() => fs.closeSync(fd))
  // Observe the writes the output makes (they still happen).
  const sizes: number[] = []
  const write = fs.write
  fs.write = ((...args: unknown[]) => {
    sizes.push(args[3] as number)
    return (write as (...a: unknown[]) => void)(...args)
  }) as typeof fs.write
  t.teardown(() => {
    fs.write = write
  })
  const output = new BatchedOutput({ fd, batchBytes: 4096, flushMs: 20, maxBatches: 100 })
  const expected: string[] = []
  for (let i = 0; i < 500; i++) {
    // Now and then a line longer than a batch: written alone, in its place.
    const text = i % 97 === 0 ? line(i, 10_000) : line(i, i % 50)
    expected.push(text)
    output.write(text)
  }
  await until(() => fs.statSync(file).size === Buffer.byteLength(expected.join('')), 'every line written')
  t.equal(fs.readFileSync(file, 'utf8'), expected.join(''), 'every line, whole, in order')
  const long = new Set(expected.map((l) => Buffer.byteLength(l)).filter((n) => n > 4096))
  t.ok(
    sizes.every((n) => n <= 4096 || long.has(n)),
    'no write longer than a batch, but a long line alone',
  )
  t.ok(sizes.length < 500 / 10, `batched: ${sizes.length} writes for 500 lines`)
  t.same(output.losses, { full: 0, failed: 0 })
})

t.test('a line waits at most flushMs for its batch to fill', async (t) => {
  const file = path.join(dir, 'timer.log')
  const fd = fs.openSync(file, 'w')
  t.teardown(() => fs.closeSync(fd))
  const output = new BatchedOutput({ fd, batchBytes: 65536, flushMs: 30, maxBatches: 4 })
  output.write(line(1))
  t.equal(fs.statSync(file).size, 0, 'not written at once')
  await until(() => fs.statSync(file).size > 0, 'the timed flush')
  // The same timer serves the next batch.
  output.write(line(2))
  await until(() => fs.readFileSync(file, 'utf8') === line(1) + line(2), 'the second timed flush')
  t.pass('both lines written by the timer')
})

t.test('a reader that stops: memory stays bounded, lines beyond are dropped, counted and reported', async (t) => {
  const fifo = path.join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  // Opened for reading and writing so the open does not wait for a reader; nobody reads yet, so
  // once the pipe's 64 KB are full the write in flight waits.
  const fd = fs.openSync(fifo, fs.constants.O_RDWR)
  const output = new BatchedOutput({ fd, batchBytes: 4096, flushMs: 10, maxBatches: 4 })
  let i = 0
  for (; i < 4000; i++) output.write(line(i))
  await until(() => output.losses.full > 0, 'lines dropped')
  // A read side drains the pipe; the output goes on and reports what it dropped.
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  t.teardown(() => {
    fs.closeSync(reader)
    fs.closeSync(fd)
  })
  let text = ''
  const chunk = Buffer.alloc(65536)
  /** Reads what the pipe holds now; the text read so far. */
  const drain = () => {
    for (;;) {
      try {
        const n = fs.readSync(reader, chunk)
        if (n === 0) return text
        text += chunk.toString('utf8', 0, n)
      } catch {
        return text // EAGAIN: nothing more now
      }
    }
  }
  await until(() => drain().includes('"msg":"log lines dropped'), 'the drop report')
  output.write(line(99_999))
  await until(() => drain().includes('"n":99999,'), 'a line after the drops')
  const lines = text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { n?: number; dropped_lines?: number })
  const report = lines.find((l) => l.dropped_lines !== undefined)!
  t.equal(report.dropped_lines, output.losses.full, 'the report counts every dropped line')
  const numbers = lines.filter((l) => l.n !== undefined).map((l) => l.n!)
  t.equal(numbers.length + output.losses.full, 4001, 'each line written or counted as dropped')
  t.same(
    numbers.slice(0, -1),
    numbers.slice(0, -1).toSorted((a, b) => a - b),
    'the lines written are in order',
  )
  t.ok(lines.indexOf(report) < lines.length - 1, 'the report comes before the lines written after the drops')
})

t.test("a descriptor that fails a write: that batch's lines are lost and counted, the output goes on", async (t) => {
  const file = path.join(dir, 'readonly.log')
  fs.writeFileSync(file, '')
  const fd = fs.openSync(file, 'r') // writes fail with EBADF
  t.teardown(() => fs.closeSync(fd))
  const output = new BatchedOutput({ fd, batchBytes: 4096, flushMs: 10, maxBatches: 4 })
  output.write(line(1))
  output.write(line(2))
  await until(() => output.losses.failed === 2, 'the failed write: its two lines counted')
  output.write(line(3))
  await until(() => output.losses.failed === 3, 'the next batch tried')
  t.equal(output.losses.full, 0)
})
