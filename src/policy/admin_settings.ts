// `admin:`, compiled: where the admin listener listens (read at start), and what a reload may
// change while it runs: its token, whether /metrics needs it, what the status page keeps and shows.
import { createHash } from 'node:crypto'
import { defaultsOf } from './defaults.js'
import { type PolicyFiles, readSecretBesidePolicy } from './policy_files.js'
import type { DocPath, OnProblem } from './problems.js'
import { AdminSchema, type PolicyDocument } from './schema.js'

export interface AdminSettings {
  readonly host: string
  readonly port: number
  /** sha256 of `token` (or `token_file`'s text): compared in constant time; null without a token. */
  readonly tokenDigest: Buffer | null
  /** With a token: /metrics is served without it. */
  readonly metricsPublic: boolean
  readonly status: {
    /** The recent refusals show the token's `sub` (personal data: off by default). */
    readonly showSubjects: boolean
    /** How many refused requests are kept, newest first. */
    readonly recentRefusals: number
  }
}

const DEFAULT = defaultsOf(AdminSchema, ['host', 'metrics_public'])
const STATUS_DEFAULT = defaultsOf(AdminSchema.properties.status, ['show_subjects', 'recent_refusals'])
// As revocation.admin_token's: a short token can be guessed over the network.
const MIN_TOKEN_BYTES = 16

type AdminDocument = Exclude<NonNullable<PolicyDocument['admin']>, false>

/** null for `admin: false`; undefined after reporting a problem. */
export function compileAdmin(doc: AdminDocument | false, files: PolicyFiles, problem: OnProblem): AdminSettings | null | undefined {
  if (doc === false) return null
  const at = (field: string): DocPath => ['admin', field]
  let tokenDigest: Buffer | null = null
  if (doc.token !== undefined && doc.token_file !== undefined) {
    problem(at('token_file'), 'give token or token_file, not both')
    return undefined
  }
  const token = doc.token_file !== undefined ? readSecretBesidePolicy(files, doc.token_file, at('token_file'), problem, 'token_file') : doc.token
  if (doc.token_file !== undefined && token === undefined) return undefined
  if (token !== undefined) {
    const bytes = Buffer.byteLength(token)
    if (bytes < MIN_TOKEN_BYTES) {
      problem(at(doc.token !== undefined ? 'token' : 'token_file'), `the admin token must be at least ${MIN_TOKEN_BYTES} bytes; it has ${bytes}`)
      return undefined
    }
    tokenDigest = createHash('sha256').update(token).digest()
  }
  if (doc.metrics_public !== undefined && tokenDigest === null) {
    problem(at('metrics_public'), 'metrics_public goes with token or token_file: without a token /metrics is public already')
    return undefined
  }
  return {
    host: doc.host ?? DEFAULT.host,
    port: doc.port,
    tokenDigest,
    metricsPublic: doc.metrics_public ?? DEFAULT.metrics_public,
    status: {
      showSubjects: doc.status?.show_subjects ?? STATUS_DEFAULT.show_subjects,
      recentRefusals: doc.status?.recent_refusals ?? STATUS_DEFAULT.recent_refusals,
    },
  }
}
