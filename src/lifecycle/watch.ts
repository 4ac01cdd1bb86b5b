// Reloading when the policy changes on disk: the file itself, and the secret and certificate
// files it names.
import { createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import type { CompiledPolicy } from '../policy/compile.js'

/**
 * The process's reloads, coalesced: one runs at a time; asked while one runs, one more runs after
 * it, however many asked (they all get its result), unless the files did not change since the
 * running one read them (a SIGHUP sent with a file change the watcher acts on). Each run notes the fingerprint of the files
 * it is about to read, so a file change a SIGHUP's reload already read does not reload again when
 * the watcher's settle window ends: a file change plus a SIGHUP is one reload, not two.
 */
export class Reloads {
  /** Runs started: for tests and the bench. */
  started = 0
  private running: Promise<boolean> | undefined
  private queued: Promise<boolean> | undefined
  private seen: string

  constructor(
    private readonly file: string,
    private readonly policy: () => CompiledPolicy,
    private readonly run: () => Promise<boolean>,
  ) {
    this.seen = fingerprint(file, policy())
  }

  /**
   * A reload (SIGHUP, the API): now, or once after the one running; that one is skipped, giving
   * the running one's result, when the files are still those the running one read.
   */
  request(): Promise<boolean> {
    if (this.running === undefined) return this.start()
    const next = (previous: boolean) => {
      this.queued = undefined
      if (fingerprint(this.file, this.policy()) === this.seen) return previous
      return this.start()
    }
    return (this.queued ??= this.running.then(next, () => next(false)))
  }

  /** The watcher saw the files settle: a reload only if they differ from what the last reload read. */
  ifChanged(): void {
    if (fingerprint(this.file, this.policy()) !== this.seen) void this.request()
  }

  private start(): Promise<boolean> {
    this.seen = fingerprint(this.file, this.policy())
    this.started++
    const done: Promise<boolean> = Promise.resolve()
      .then(this.run)
      .finally(() => {
        if (this.running === done) this.running = undefined
      })
    this.running = done
    return done
  }
}

/**
 * Kubernetes updates a mounted ConfigMap by swapping a symlink in the file's directory, so the
 * directory is watched, not the file; the file's content hash decides whether anything changed.
 * The directories of the other files it reads (secrets, certificates: cert-manager renews them
 * in place) are watched too.
 */
export function watchPolicy(file: string, policy: () => CompiledPolicy, reloads: Reloads, logger: Logger): { close(): void } {
  const watchers = new Map<string, FSWatcher>()
  let timer: NodeJS.Timeout | undefined
  const check = () => reloads.ifChanged()
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
