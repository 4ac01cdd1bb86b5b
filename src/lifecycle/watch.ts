// Reloading when the policy changes on disk: the file itself, and the secret and certificate
// files it names.
import { createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import type { CompiledPolicy } from '../policy/compile.js'

/**
 * Kubernetes updates a mounted ConfigMap by swapping a symlink in the file's directory, so the
 * directory is watched, not the file; the file's content hash decides whether anything changed.
 * The directories of the other files it reads (secrets, certificates: cert-manager renews them
 * in place) are watched too.
 */
export function watchPolicy(file: string, policy: () => CompiledPolicy, onChange: () => void, logger: Logger): { close(): void } {
  const watchers = new Map<string, FSWatcher>()
  let lastSeen = fingerprint(file, policy())
  let timer: NodeJS.Timeout | undefined
  const check = () => {
    const now = fingerprint(file, policy())
    if (now === lastSeen) return
    lastSeen = now
    onChange()
  }
  const dirs = () => new Set([path.dirname(path.resolve(file)), ...policy().files.map((f) => path.dirname(f))])
  const sync = () => {
    for (const dir of dirs()) {
      if (watchers.has(dir)) continue
      try {
        const w = watch(dir, () => {
          clearTimeout(timer)
          // Editors and kubelet write in several steps; settle first.
          timer = setTimeout(() => {
            check()
            sync()
          }, 200)
          timer.unref()
        })
        w.unref()
        watchers.set(dir, w)
      } catch (err) {
        logger.warn({ dir, error: (err as Error).message }, 'cannot watch for policy changes; SIGHUP still reloads')
      }
    }
  }
  sync()
  return {
    close: () => {
      clearTimeout(timer)
      for (const w of watchers.values()) w.close()
    },
  }
}

function fingerprint(file: string, policy: CompiledPolicy): string {
  const hash = createHash('sha256')
  for (const f of [file, ...policy.files]) {
    try {
      hash.update(readFileSync(f))
    } catch {
      hash.update('missing')
    }
  }
  return hash.digest('hex')
}
