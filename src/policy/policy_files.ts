// Files a policy names (secret files, certificates): relative paths are read from the policy's
// own directory, so a policy and its secrets move together (a ConfigMap next to a Secret mount).
import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { DocPath, OnProblem, ProblemSink } from './problems.js'
import type { PolicyDocument } from './schema.js'

/** Where the files a policy names are read from, and whether they are read at all. */
export interface PolicyFiles {
  /** The policy file: a relative name is read from its directory. */
  readonly file: string
  /**
   * `validate --offline` (CI without the secrets): no file is read, each one is noted here
   * instead, and whatever would have been built from it is left unchecked, with no problem.
   */
  readonly unchecked?: ProblemSink | undefined
}

/** The file's bytes; undefined after saying at `at` why it cannot be read (`cannot read <what> /path/to/file: ENOENT`). */
export function readBesidePolicy(files: PolicyFiles, file: string, at: DocPath, problem: OnProblem, what?: string): Buffer | undefined {
  const resolved = path.resolve(path.dirname(files.file), file)
  const named = what === undefined ? resolved : `${what} ${resolved}`
  if (files.unchecked) {
    files.unchecked.add(at, `${named} not read (offline)`)
    return undefined
  }
  try {
    return readFileSync(resolved)
  } catch (err) {
    problem(at, `cannot read ${named}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    return undefined
  }
}

/** A secret file's text without the one trailing newline an editor or `echo` leaves. */
export function readSecretBesidePolicy(files: PolicyFiles, file: string, at: DocPath, problem: OnProblem, what: string): string | undefined {
  return readBesidePolicy(files, file, at, problem, what)
    ?.toString('utf8')
    .replace(/\r?\n$/, '')
}

/**
 * The absolute paths of the files a policy reads at load besides itself (secret files,
 * certificates and keys): a change to any of them is a change to the policy. The revocation file
 * backend's file is not one: its store reads and writes it while running.
 */
export function filesReadAtLoad(policyFile: string, doc: PolicyDocument): string[] {
  const files = Object.values(doc.issuers ?? {}).flatMap((i) => [i.secret_file, ...(i.secrets ?? []).map((s) => s.secret_file)])
  files.push(
    doc.revocation?.admin_token_file,
    doc.admin ? doc.admin.token_file : undefined,
    doc.dpop?.nonce?.secret_file,
    doc.listen.tls?.client_certificates?.ca_file,
  )
  for (const tls of [doc.listen.tls, ...Object.values(doc.upstreams).map((u) => u.tls)]) {
    files.push(tls?.cert_file, tls?.key_file, tls && 'ca_file' in tls ? tls.ca_file : undefined)
  }
  return files.flatMap((f) => (f === undefined ? [] : [path.resolve(path.dirname(policyFile), f)]))
}
