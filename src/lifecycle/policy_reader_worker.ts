// The policy reader's worker thread (see policy_reader.ts): reads and checks the file, sends the
// plain document without its routes, then the routes a slice at a time and, if asked, the
// places of the compile's problems, until it is terminated.
import { parentPort, workerData } from 'node:worker_threads'
import { type Env, type PolicySource, readPolicySource } from '../policy/load.js'
import { type DocPath, PolicyError, type PolicyProblem } from '../policy/problems.js'

export type ReaderAnswer =
  /** The document and its redacted copy with `routes: []`; `routes` of them follow on request. */
  | { kind: 'document'; document: unknown; text: string; redacted: unknown; routes: number }
  | { kind: 'routes'; routes: unknown[]; redacted: unknown[] }
  | { kind: 'problems'; problems: PolicyProblem[] }
  | { kind: 'places'; places: Array<{ line: number; col: number }> }
  | { kind: 'failed'; message: string }

export type ReaderRequest = { kind: 'routes'; from: number; to: number } | { kind: 'place'; places: Array<{ path: DocPath; at: 'key' | 'value' }> }

type WithRoutes = { routes: unknown[] }

const port = parentPort
if (port) {
  const { file, env } = workerData as { file: string; env: Env }
  let source: PolicySource | undefined
  try {
    source = readPolicySource(file, env)
    const { document, redacted } = source as unknown as { document: WithRoutes; redacted: WithRoutes }
    port.postMessage({
      kind: 'document',
      document: { ...document, routes: [] },
      text: source.text,
      redacted: { ...redacted, routes: [] },
      routes: document.routes.length,
    } satisfies ReaderAnswer)
  } catch (err) {
    const answer: ReaderAnswer =
      err instanceof PolicyError ? { kind: 'problems', problems: [...err.problems] } : { kind: 'failed', message: (err as Error).message }
    port.postMessage(answer)
  }
  port.on('message', (request: ReaderRequest) => {
    if (!source) return
    if (request.kind === 'routes') {
      const { document, redacted } = source as unknown as { document: WithRoutes; redacted: WithRoutes }
      const { from, to } = request
      port.postMessage({ kind: 'routes', routes: document.routes.slice(from, to), redacted: redacted.routes.slice(from, to) } satisfies ReaderAnswer)
      return
    }
    const sink = source.problems
    const places = request.places.map(({ path, at }) => {
      sink.add(path, '', at)
      const { line, col } = sink.list.pop()!
      return { line, col }
    })
    port.postMessage({ kind: 'places', places } satisfies ReaderAnswer)
  })
}
