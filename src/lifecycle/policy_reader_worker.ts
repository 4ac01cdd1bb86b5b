// The policy reader's worker thread (see policy_reader.ts): reads and checks the file, sends the
// plain document, then places the compile's problems if asked, until it is terminated.
import { parentPort, workerData } from 'node:worker_threads'
import { type Env, type PolicySource, readPolicySource } from '../policy/load.js'
import { type DocPath, PolicyError, type PolicyProblem } from '../policy/problems.js'

export type ReaderAnswer =
  | { kind: 'document'; document: unknown; text: string; redacted: unknown }
  | { kind: 'problems'; problems: PolicyProblem[] }
  | { kind: 'places'; places: Array<{ line: number; col: number }> }
  | { kind: 'failed'; message: string }

export type ReaderRequest = { kind: 'place'; places: Array<{ path: DocPath; at: 'key' | 'value' }> }

const port = parentPort
if (port) {
  const { file, env } = workerData as { file: string; env: Env }
  let source: PolicySource | undefined
  try {
    source = readPolicySource(file, env)
    port.postMessage({ kind: 'document', document: source.document, text: source.text, redacted: source.redacted } satisfies ReaderAnswer)
  } catch (err) {
    const answer: ReaderAnswer =
      err instanceof PolicyError ? { kind: 'problems', problems: [...err.problems] } : { kind: 'failed', message: (err as Error).message }
    port.postMessage(answer)
  }
  port.on('message', (request: ReaderRequest) => {
    if (!source) return
    const sink = source.problems
    const places = request.places.map(({ path, at }) => {
      sink.add(path, '', at)
      const { line, col } = sink.list.pop()!
      return { line, col }
    })
    port.postMessage({ kind: 'places', places } satisfies ReaderAnswer)
  })
}
