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
 * Directories of secret files the policy names are watched too.
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
  const dirs = () => new Set([path.dirname(path.resolve(file)), ...secretFiles(policy()).map((f) => path.dirname(f))])
  const sync = () => {
    for (const dir of dirs()) {
      if (watchers.has(dir)) continue
      try {
        const w = watch(dir, () => {
          clearTimeout(timer)
          // Editors and kubelet write in several steps; settle first.
          timer = setTimeout(() => { check(); sync() }, 200)
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
  return { close: () => { clearTimeout(timer); for (const w of watchers.values()) w.close() } }
}

function secretFiles(policy: CompiledPolicy): string[] {
  type TlsFiles = { ca_file?: string; cert_file?: string; key_file?: string }
  const doc = policy.redacted as { issuers?: Record<string, { secret_file?: string }>; revocation?: { admin_token_file?: string }; listen: { tls?: TlsFiles }; upstreams: Record<string, { tls?: TlsFiles }> }
  const files = Object.values(doc.issuers ?? {}).map((i) => i.secret_file)
  files.push(doc.revocation?.admin_token_file)
  // Certificates too: cert-manager renews them in place, and a reload picks the new ones up.
  for (const tls of [doc.listen.tls, ...Object.values(doc.upstreams).map((u) => u.tls)]) files.push(tls?.ca_file, tls?.cert_file, tls?.key_file)
  return files.flatMap((f) => (f ? [path.resolve(path.dirname(policy.file), f)] : []))
}

function fingerprint(file: string, policy: CompiledPolicy): string {
  const hash = createHash('sha256')
  for (const f of [file, ...secretFiles(policy)]) {
    try {
      hash.update(readFileSync(f))
    } catch {
      hash.update('missing')
    }
  }
  return hash.digest('hex')
}
