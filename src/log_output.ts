// Where the log's lines go: a file descriptor (standard output), written in batches from a few
// buffers allocated once. sonic-boom (pino's destination) made a Buffer for every line and
// concatenated a new one for every batch: memory malloc returns only when V8 collects the
// Buffer objects, which under load kept 10-12 MB more of the process's malloc heap (probes of a
// loaded gateway: the brk heap at 26 MB with the access log off, 38 with it on). Here a line is
// encoded straight into the batch being filled, and a written batch's buffer is filled again.

import fs from 'node:fs'

export interface BatchedOutputOptions {
  /** The file descriptor written to (1: standard output). */
  fd: number
  /**
   * The most bytes a write carries, whole lines only: the size of each buffer. Where processes
   * share the descriptor, PIPE_BUF (4096) keeps each write atomic. A longer line is written alone.
   */
  batchBytes: number
  /** A line waits at most this long for its batch to fill. */
  flushMs: number
  /**
   * Batches held at most, the one being filled included. When the descriptor does not keep up
   * (a blocked pipe), further lines are dropped and counted, and a line saying how many is
   * written once it drains: a log reader that stops must not grow the gateway's memory.
   */
  maxBatches: number
}

/** Lines not written: dropped while every batch was full (`full`), or in a batch a write failed (`failed`). */
export interface OutputLosses {
  full: number
  failed: number
}

const RETRY_MS = 100

/** Every output with lines not yet written, for the synchronous flush when the process exits. */
const unflushed = new Set<BatchedOutput>()
let exitHook = false

export class BatchedOutput {
  /** The batch being filled and its length in bytes; no buffer until the first line. */
  private filling: Buffer | undefined
  private used = 0
  /** Batches waiting, oldest first, with their lengths and line counts; the head is the one being written. */
  private readonly queue: Buffer[] = []
  private readonly lengths: number[] = []
  private readonly lineCounts: number[] = []
  /** Lines in the batch being filled. */
  private lines = 0
  /** Bytes of the queue's head already written, while a write is in flight. */
  private written = 0
  private writing = false
  /** Buffers written and free to fill again. */
  private readonly spare: Buffer[] = []
  private allocated = 0
  private timer: NodeJS.Timeout | undefined
  private timerArmed = false
  private droppedSinceReport = 0
  /** drain() calls waiting for the queue to empty. */
  private readonly drained: Array<() => void> = []
  readonly losses: OutputLosses = { full: 0, failed: 0 }

  constructor(readonly options: BatchedOutputOptions) {}

  /** pino's destination interface: one or more whole lines. */
  write(line: string): void {
    const size = this.options.batchBytes
    // UTF-8 takes at most 3 bytes for a UTF-16 code unit: most lines need no exact measure.
    if (this.filling === undefined || this.used + line.length * 3 > size) {
      const bytes = Buffer.byteLength(line)
      if (bytes > size) {
        this.writeLong(line)
        return
      }
      if (this.filling === undefined || this.used + bytes > size) {
        this.seal()
        if (this.filling === undefined && !this.take()) {
          this.drop()
          return
        }
      }
    }
    this.used += this.filling!.write(line, this.used)
    this.lines++
    if (!this.timerArmed) this.arm()
  }

  /** The first line of a batch: it is written within flushMs, or at the process's exit. */
  private arm(): void {
    this.timerArmed = true
    // One timer for the output's life, started again for each batch (refresh() re-arms a fired one).
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.onTimer(), this.options.flushMs)
      this.timer.unref()
    } else this.timer.refresh()
    unflushed.add(this)
    if (!exitHook) {
      exitHook = true
      process.on('exit', flushAllSync)
    }
  }

  /**
   * Resolves once every line held now is written, or after timeoutMs (a reader that stopped must
   * not hold the exit): the graceful shutdown's last step. The synchronous flush at exit cannot
   * wait for a write already handed to the thread pool, and process.exit() ends it unfinished.
   */
  drain(timeoutMs: number): Promise<void> {
    this.seal()
    if (!this.writing) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs)
      this.drained.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /** Writes every line held now, synchronously (the process is exiting). The write in flight is the thread pool's. */
  flushSync(): void {
    this.enqueueFilling()
    const start = this.writing ? 1 : 0
    for (let i = start; i < this.queue.length; i++) writeAllSync(this.options.fd, this.queue[i]!, this.lengths[i]!)
    this.queue.length = start
    this.lengths.length = start
    this.lineCounts.length = start
    unflushed.delete(this)
  }

  private onTimer(): void {
    this.timerArmed = false
    this.seal()
  }

  /** Queues the batch being filled, if it holds anything, and writes when nothing is in flight. */
  private seal(): void {
    this.enqueueFilling()
    this.kick()
  }

  private enqueueFilling(): void {
    if (this.filling !== undefined && this.used > 0) {
      this.queue.push(this.filling)
      this.lengths.push(this.used)
      this.lineCounts.push(this.lines)
      this.filling = undefined
      this.used = 0
      this.lines = 0
    }
  }

  /** A buffer to fill: a spare one, or a new one while under maxBatches. */
  private take(): boolean {
    const spare = this.spare.pop()
    if (spare !== undefined) this.filling = spare
    else if (this.allocated < this.options.maxBatches) {
      this.filling = Buffer.allocUnsafeSlow(this.options.batchBytes)
      this.allocated++
    } else return false
    this.used = 0
    this.lines = 0
    return true
  }

  private drop(): void {
    this.losses.full++
    this.droppedSinceReport++
  }

  /** A line longer than a batch: queued alone (after the batch being filled, to keep the order). */
  private writeLong(line: string): void {
    this.seal()
    if (this.queue.length >= this.options.maxBatches) {
      this.drop()
      return
    }
    const buffer = Buffer.from(line)
    this.queue.push(buffer)
    this.lengths.push(buffer.length)
    this.lineCounts.push(1)
    this.kick()
  }

  private kick(): void {
    if (this.writing || this.queue.length === 0) return
    this.writing = true
    this.written = 0
    this.writeHead()
  }

  private writeHead(): void {
    const head = this.queue[0]!
    fs.write(this.options.fd, head, this.written, this.lengths[0]! - this.written, null, this.onWritten)
  }

  private readonly onWritten = (error: NodeJS.ErrnoException | null, bytes: number): void => {
    if (error !== null) {
      if (error.code === 'EAGAIN' || error.code === 'EBUSY') {
        setTimeout(() => this.writeHead(), RETRY_MS).unref()
        return
      }
      // EPIPE (the reader is gone) and the like: this batch is lost; later ones are tried.
      this.losses.failed += this.lineCounts[0]!
      bytes = this.lengths[0]! - this.written
    }
    this.written += bytes
    if (this.written < this.lengths[0]!) {
      this.writeHead()
      return
    }
    const done = this.queue.shift()!
    this.lengths.shift()
    this.lineCounts.shift()
    if (done.length === this.options.batchBytes) this.spare.push(done)
    this.writing = false
    // Lines were dropped since the queue last had room: say so where they are missing, once a
    // batch buffer is free for the line.
    if (this.droppedSinceReport > 0 && this.spare.length > 0) {
      const count = this.droppedSinceReport
      this.droppedSinceReport = 0
      this.reportDrops(count)
    }
    if (this.queue.length === 0 && this.used === 0) unflushed.delete(this)
    this.kick()
    if (!this.writing) for (const done of this.drained.splice(0)) done()
  }

  /**
   * Writes the line that says how many lines were dropped. The logger sets it (src/log.ts) so the
   * line has the logger's format (time, level label, a worker's number); this is its shape alone.
   */
  reportDrops: (count: number) => void = (count) => {
    this.write(`{"level":40,"time":${Date.now()},"service":"jwtgate","dropped_lines":${count},"msg":"${DROPPED}"}\n`)
  }
}

/** The message of the line that reports dropped lines. */
export const DROPPED = 'log lines dropped: standard output did not keep up'

function flushAllSync(): void {
  for (const output of unflushed) output.flushSync()
}

function writeAllSync(fd: number, buffer: Buffer, length: number): void {
  let offset = 0
  // A non-blocking descriptor that is full: wait for it, a bounded number of times.
  for (let tries = 0; offset < length && tries < 1000; ) {
    try {
      offset += fs.writeSync(fd, buffer, offset, length - offset)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'EAGAIN' && code !== 'EBUSY') return
      tries++
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
    }
  }
}
