// Files a policy names (secret files, certificates): relative paths are read from the policy's
// own directory, so a policy and its secrets move together (a ConfigMap next to a Secret mount).
import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { PolicyDocument } from './schema.js'

/** The file's bytes, or the message for the policy author (`cannot read <what>: ENOENT`). */
export function readBesidePolicy(policyFile: string, file: string, what: string = file): Buffer | { problem: string } {
  try {
    return readFileSync(path.resolve(path.dirname(policyFile), file))
  } catch (err) {
    return { problem: `cannot read ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }
  }
}

/** A secret file's text without the one trailing newline an editor or `echo` leaves. */
export function readSecretBesidePolicy(policyFile: string, file: string, what: string): string | { problem: string } {
  const read = readBesidePolicy(policyFile, file, what)
  return Buffer.isBuffer(read) ? read.toString('utf8').replace(/\r?\n$/, '') : read
}

/**
 * The absolute paths of the files a policy reads at load besides itself (secret files,
 * certificates and keys): a change to any of them is a change to the policy. The revocation file
 * backend's file is not one: its store reads and writes it while running.
 */
export function filesReadAtLoad(policyFile: string, doc: PolicyDocument): string[] {
  const files = Object.values(doc.issuers ?? {}).map((i) => i.secret_file)
  files.push(doc.revocation?.admin_token_file)
  for (const tls of [doc.listen.tls, ...Object.values(doc.upstreams).map((u) => u.tls)]) {
    files.push(tls?.cert_file, tls?.key_file, tls && 'ca_file' in tls ? tls.ca_file : undefined)
  }
  return files.flatMap((f) => (f === undefined ? [] : [path.resolve(path.dirname(policyFile), f)]))
}
