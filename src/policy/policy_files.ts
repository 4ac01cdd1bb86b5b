// Files a policy names (secret files, certificates): relative paths are read from the policy's
// own directory, so a policy and its secrets move together (a ConfigMap next to a Secret mount).
import { readFileSync } from 'node:fs'
import path from 'node:path'

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
