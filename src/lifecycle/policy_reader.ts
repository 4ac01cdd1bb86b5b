// Reading a policy file off the event loop, for a running gateway's reload. The YAML parse,
// ${VAR} interpolation, schema validation and redaction of a large policy take most of a
// second (5,000 routes), during which a gateway doing them on its main thread would answer no
// request. A worker thread does that part and hands over the plain document; the main thread
// then compiles it in slices (compilePolicyInSlices). Problems the compile finds are placed at
// their file:line:col by the worker, which still holds the parsed YAML until it is closed.
import { statSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { compilePolicyInSlices, type CompiledPolicy } from '../policy/compile.js'
import { type Env, type PolicySource, readPolicySource } from '../policy/load.js'
import { type DocPath, PolicyError, type PolicyProblem } from '../policy/problems.js'
import type { PolicyDocument } from '../policy/schema.js'
import type { ReaderAnswer, ReaderRequest } from './policy_reader_worker.js'

// From dist/ the worker is JavaScript. From src/ (tests, the bench) it is TypeScript, which a
// worker thread loads only after registering tsx's loader itself: Node 20 does not apply the
// parent's --import hooks to a worker's entry module.
const FROM_SOURCE = import.meta.url.endsWith('.ts')
const WORKER_URL = new URL(FROM_SOURCE ? './policy_reader_worker.ts' : './policy_reader_worker.js', import.meta.url)

function startWorker(workerData: unknown): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER_URL, { workerData })
  const tsx = import.meta.resolve('tsx/esm/api')
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}) })`
  return new Worker(boot, { eval: true, workerData })
}

// Below this size the file is read on the main thread: a few milliseconds, less than a worker
// takes to start (its modules and the schema validator load anew in each worker).
const OFF_THREAD_BYTES = 64 * 1024
const ROUTES_PER_MESSAGE = 250

/** loadPolicy for a reload: the same checks and problems, without holding the event loop for long. */
export async function loadPolicyForReload(
  file: string,
  log: Logger,
  env: Env,
  previous?: CompiledPolicy,
  offThreadBytes = OFF_THREAD_BYTES,
): Promise<CompiledPolicy> {
  if (fileSize(file) < offThreadBytes) return compilePolicyInSlices(readPolicySource(file, env), log, previous)
  const reader = new PolicyReader(file, env)
  try {
    const source = await reader.read()
    try {
      return await compilePolicyInSlices(source, log, previous)
    } catch (err) {
      if (err instanceof PolicyError) throw await reader.placeProblems(source)
      throw err
    }
  } finally {
    reader.close()
  }
}

/** The file's size; 0 when it cannot be read, so the reader on the main thread says why. */
function fileSize(file: string): number {
  try {
    return statSync(file).size
  } catch {
    return 0
  }
}

interface Unplaced {
  problem: PolicyProblem
  path: DocPath
  at: 'key' | 'value'
}

class PolicyReader {
  private readonly worker: Worker
  private readonly answers: Array<(answer: ReaderAnswer) => void> = []
  // Answers that came before anyone asked for them.
  private readonly inbox: ReaderAnswer[] = []
  private failure: Error | undefined
  private readonly unplaced: Unplaced[] = []

  constructor(
    private readonly file: string,
    env: Env,
  ) {
    this.worker = startWorker({ file, env: { ...env } })
    this.worker.on('message', (answer: ReaderAnswer) => {
      const waiting = this.answers.shift()
      if (waiting) waiting(answer)
      else this.inbox.push(answer)
    })
    // A worker that dies (out of memory on a hostile file, a bug) fails this reload, nothing more.
    const fail = (err: Error) => {
      this.failure ??= err
      for (const answer of this.answers.splice(0)) answer({ kind: 'failed', message: err.message })
    }
    this.worker.on('error', fail)
    this.worker.on('exit', (code) => fail(new Error(`the policy reader stopped (exit code ${code})`)))
  }

  /** The checked document, or PolicyError with every problem the document stage found. */
  async read(): Promise<PolicySource> {
    const answer = await this.next()
    if (answer.kind === 'problems') throw new PolicyError(answer.problems)
    if (answer.kind !== 'document') throw this.cannotRead(answer)
    const document = answer.document as PolicyDocument
    const redacted = answer.redacted as { routes: unknown[] }
    // A message is taken off the thread in one piece: a 5,000-route document at once held the
    // event loop for some 40 ms. Asked for a slice at a time, each is a short task of its own.
    for (let from = 0; from < answer.routes; from += ROUTES_PER_MESSAGE) {
      this.send({ kind: 'routes', from, to: from + ROUTES_PER_MESSAGE })
      const slice = await this.next()
      if (slice.kind !== 'routes') throw this.cannotRead(slice)
      for (const route of slice.routes) document.routes.push(route as PolicyDocument['routes'][number])
      for (const route of slice.redacted) redacted.routes.push(route)
    }
    const list: PolicyProblem[] = []
    const unplaced = this.unplaced
    const file = this.file
    return {
      file,
      document,
      text: answer.text,
      redacted,
      problems: {
        list,
        // Placed later, all at once, if the compile fails: until then the problem is listed at 1:1.
        add(path, message, at = 'value') {
          const problem = { file, line: 1, col: 1, message }
          list.push(problem)
          unplaced.push({ problem, path, at })
        },
      },
    }
  }

  /** The compile's PolicyError again, each problem at its line and column. */
  async placeProblems(source: PolicySource): Promise<PolicyError> {
    if (this.unplaced.length) {
      this.send({ kind: 'place', places: this.unplaced.map(({ path, at }) => ({ path, at })) })
      const answer = await this.next()
      if (answer.kind === 'places') {
        for (const [i, place] of answer.places.entries()) Object.assign(this.unplaced[i]!.problem, place)
      }
    }
    return new PolicyError(source.problems.list)
  }

  close(): void {
    this.answers.length = 0
    void this.worker.terminate()
  }

  private next(): Promise<ReaderAnswer> {
    const early = this.inbox.shift()
    if (early) return Promise.resolve(early)
    if (this.failure) return Promise.resolve({ kind: 'failed', message: this.failure.message })
    return new Promise((resolve) => this.answers.push(resolve))
  }

  private send(request: ReaderRequest): void {
    this.worker.postMessage(request)
  }

  private cannotRead(answer: ReaderAnswer): PolicyError {
    const message = answer.kind === 'failed' ? answer.message : `unexpected answer ${answer.kind}`
    return new PolicyError([{ file: this.file, line: 1, col: 1, message: `cannot read policy: ${message}` }])
  }
}
