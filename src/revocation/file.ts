// The file backend: a YAML (or JSON) list, read at start and again whenever it changes, for
// one node. The file is the whole truth: an entry removed from it is no longer revoked.
//
//   - { jti: 3f6c0b2e-…, exp: 1767225600 }   # one token, until its exp (unix seconds)
//   - { sub: alice, before: 1767225600 }     # alice's tokens issued before that moment
//   - { sub: mallory }                       # every token of mallory, until removed
//   - { sub: bob, iss: "https://idp.example.com/" }   # bob of that issuer only
//
// An entry without iss (or with iss: "*") applies to every issuer.
// A jti entry without exp is kept until removed. `jwtgate revoke` and POST /revocations
// append to the file (dropping entries that have expired), through a temporary file and a
// rename, so a reader never sees half a file.
import { readFileSync, renameSync, unwatchFile, watchFile, writeFileSync, type Stats } from 'node:fs'
import { parse } from 'yaml'
import { checkIssuer, RevocationSet } from './set.js'
import { changed, LocalUses, RevocationStore, type Revocation } from './store.js'

/** How often the file's status is polled for changes (fs.watchFile; works across renames and mounts). */
const POLL_INTERVAL_MS = 250

type FileEntry = ({ jti: string; exp?: number } | { sub: string; before?: number }) & { iss?: string }

export class FileStore extends RevocationStore {
  private readonly uses = new LocalUses()
  private watching = false

  private get path(): string {
    return this.settings.file!.path
  }

  protected async open(): Promise<void> {
    this.load()
    watchFile(this.path, { interval: POLL_INTERVAL_MS, persistent: false }, this.onChange)
    this.watching = true
  }

  protected async close(): Promise<void> {
    if (this.watching) unwatchFile(this.path, this.onChange)
    this.watching = false
  }

  private readonly onChange = (current: Stats, previous: Stats) => {
    if (current.mtimeMs !== previous.mtimeMs || current.size !== previous.size || current.ino !== previous.ino) this.load()
  }

  /** Reads the whole file and replaces the set; keeps the last good set when the file is bad. */
  load(): void {
    if (this.state === 'stopped') return
    let entries: FileEntry[]
    try {
      entries = this.read()
    } catch (err) {
      this.unavailable(`${this.path}: ${(err as Error).message}`)
      return
    }
    const next = new RevocationSet()
    for (const e of entries) {
      if ('jti' in e) next.addJti(e.jti, e.exp === undefined ? Infinity : e.exp * 1000 + this.marginMs, e.iss)
      else if (e.before === undefined) next.addSubject(e.sub, Infinity, Infinity, e.iss)
      else next.addSubject(e.sub, e.before, e.before * 1000 + this.settings.maxTokenLifetimeMs + this.marginMs, e.iss)
    }
    next.sweep(Date.now())
    this.set.replaceWith(next)
    this.synced(entries.length)
    if (next.size > 0) changed()
  }

  /** The file's entries; a missing file is an empty list. Throws on anything malformed. */
  private read(): FileEntry[] {
    let text: string
    try {
      text = readFileSync(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new Error(`cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    const doc = parseList(text)
    if (doc === null || doc === undefined) return []
    if (!Array.isArray(doc)) throw new Error('must be a list of { jti, exp } or { sub, before } entries')
    return doc.map((item, i) => checkEntry(item, i))
  }

  protected async persist(entry: Revocation): Promise<void> {
    const now = Date.now()
    // Keep what still matters, then add the new entry.
    const kept = this.read().filter((e) => {
      if ('jti' in e) return e.exp === undefined || e.exp * 1000 + this.marginMs > now
      return e.before === undefined || e.before * 1000 + this.settings.maxTokenLifetimeMs + this.marginMs > now
    })
    const iss = entry.iss !== undefined ? { iss: entry.iss } : {}
    kept.push(
      entry.kind === 'jti'
        ? { jti: entry.id, exp: entry.exp ?? Math.ceil((entry.expiresAt - this.marginMs) / 1000), ...iss }
        : { sub: entry.id, before: entry.before, ...iss },
    )
    const text = '# jwtgate revocation list (see docs/policy.md#revocation)\n' + kept.map((e) => `- ${JSON.stringify(e)}\n`).join('')
    const temporary = `${this.path}.${process.pid}.tmp`
    writeFileSync(temporary, text, { mode: 0o640 })
    renameSync(temporary, this.path)
  }

  protected async claimFirstUse(key: string, ttlMs: number): Promise<boolean> {
    return this.uses.claim(key, ttlMs)
  }

  protected override sweep(now: number): void {
    super.sweep(now)
    this.uses.sweep(now)
  }
}

/**
 * The file as data. A JSON array, and the one-JSON-object-per-line YAML list that `jwtgate
 * revoke` writes, are read with JSON.parse: the YAML parser builds a document tree first, which
 * for 100,000 entries took seconds and some 400 MB at its peak. Anything else goes to the YAML
 * parser, which also says where a malformed file goes wrong.
 */
function parseList(text: string): unknown {
  if (text.trimStart().startsWith('[')) {
    try {
      return JSON.parse(text)
    } catch {
      // Not JSON after all: YAML's error has the line and column.
    }
  }
  return jsonLines(text) ?? parse(text)
}

/** `- {…json…}` lines (and comments, blank lines) as a list; undefined for any other line. */
function jsonLines(text: string): unknown[] | undefined {
  const items: unknown[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    if (!line.startsWith('- {') || !line.endsWith('}')) return undefined
    try {
      items.push(JSON.parse(line.slice(2)))
    } catch {
      return undefined
    }
  }
  return items
}

function checkEntry(item: unknown, index: number): FileEntry {
  const bad = (why: string) => new Error(`entry ${index + 1}: ${why}`)
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw bad('must be a map with jti or sub')
  const e = item as Record<string, unknown>
  const keys = Object.keys(e)
  const number = (name: string) => {
    const v = e[name]
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v))) throw bad(`${name} must be a number of seconds since 1970`)
    return v as number | undefined
  }
  const scope = checkIssuer(e.iss)
  if (typeof scope === 'string') throw bad(scope)
  const iss = scope.iss !== undefined ? { iss: scope.iss } : {}
  if (typeof e.jti === 'string' && e.jti !== '') {
    if (keys.some((k) => k !== 'jti' && k !== 'exp' && k !== 'iss')) throw bad('a jti entry has only jti, exp and iss')
    const exp = number('exp')
    return exp === undefined ? { jti: e.jti, ...iss } : { jti: e.jti, exp, ...iss }
  }
  if (typeof e.sub === 'string' && e.sub !== '') {
    if (keys.some((k) => k !== 'sub' && k !== 'before' && k !== 'iss')) throw bad('a sub entry has only sub, before and iss')
    const before = number('before')
    return before === undefined ? { sub: e.sub, ...iss } : { sub: e.sub, before, ...iss }
  }
  throw bad('needs a non-empty jti or sub')
}
