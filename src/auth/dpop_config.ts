// The policy's `dpop:` section: the proof algorithms, window and size, the replay cache kept in
// memory, and server nonces. Compiled once per policy; src/auth/dpop.ts runs it per proof.
import { randomBytes } from 'node:crypto'
import { durationMs } from '../policy/duration.js'
import { readSecretBesidePolicy, type PolicyFiles } from '../policy/policy_files.js'
import type { OnProblem } from '../policy/problems.js'
import { defaultsOf } from '../policy/defaults.js'
import { DpopSchema, type DpopDocument } from '../policy/schema.js'
import { ProofKeys, type DpopSettings } from './dpop.js'
import { DpopNonces } from './dpop_nonce.js'

const DEFAULT = defaultsOf(DpopSchema, ['algorithms', 'proof_max_age', 'max_proof_bytes'])
const NONCE_DEFAULT = defaultsOf(DpopSchema.properties.nonce, ['lifetime'])
const REPLAY_DEFAULT = defaultsOf(DpopSchema.properties.replay_cache, ['max_entries'])
const MIN_NONCE_SECRET_BYTES = 32

export interface CompiledDpop {
  settings: DpopSettings
  /** Proofs remembered per process when no shared store holds them. */
  replayEntries: number
}

/** `dpop:` (absent: the defaults); undefined after saying what cannot be used. `workers`: processes serving the listener. */
export function compileDpop(
  spec: DpopDocument | undefined,
  files: PolicyFiles,
  workers: number,
  problem: OnProblem,
  previous?: DpopSettings,
): CompiledDpop | undefined {
  let ok = true
  const maxAgeMs = durationMs(spec?.proof_max_age ?? DEFAULT.proof_max_age)
  if (maxAgeMs <= 0) {
    problem(['dpop', 'proof_max_age'], 'dpop.proof_max_age must be more than 0')
    ok = false
  }
  let nonces: DpopNonces | null = null
  if (spec?.nonce) {
    const { nonce } = spec
    const lifetimeMs = durationMs(nonce.lifetime ?? NONCE_DEFAULT.lifetime)
    let secret: Buffer | undefined
    if (nonce.secret !== undefined && nonce.secret_file !== undefined) {
      problem(['dpop', 'nonce', 'secret_file'], 'give secret or secret_file, not both')
      ok = false
    } else if (nonce.secret !== undefined || nonce.secret_file !== undefined) {
      let unreadable = false
      const text =
        nonce.secret_file !== undefined
          ? readSecretBesidePolicy(
              files,
              nonce.secret_file,
              ['dpop', 'nonce', 'secret_file'],
              (at, message) => {
                unreadable = true
                problem(at, message)
              },
              'secret_file',
            )
          : nonce.secret
      if (text !== undefined && Buffer.byteLength(text) < MIN_NONCE_SECRET_BYTES) {
        problem(
          ['dpop', 'nonce', nonce.secret_file !== undefined ? 'secret_file' : 'secret'],
          `the nonce secret must be at least ${MIN_NONCE_SECRET_BYTES} bytes`,
        )
      } else if (text !== undefined) secret = Buffer.from(text)
      // validate --offline reads no file: the rest is checked with a stand-in secret.
      else if (!unreadable) secret = randomBytes(MIN_NONCE_SECRET_BYTES)
      if (secret === undefined) ok = false
    } else if (workers > 1) {
      // Each process would make its own secret, and refuse the nonces of the others.
      problem(['dpop', 'nonce'], 'dpop.nonce with more than one worker needs a secret (or secret_file) that every worker shares')
      ok = false
    } else {
      // A reload keeps the process's own secret: the nonces it handed out stay good.
      const kept = previous?.nonces
      if (kept && kept.lifetimeMs === lifetimeMs && !previous.nonceSecretGiven) nonces = kept
      else secret = randomBytes(MIN_NONCE_SECRET_BYTES)
    }
    if (lifetimeMs <= 0) {
      problem(['dpop', 'nonce', 'lifetime'], 'dpop.nonce.lifetime must be more than 0')
      ok = false
    }
    if (secret) nonces = new DpopNonces(secret, lifetimeMs)
  }
  if (!ok) return undefined
  const algorithms = new Set<string>(spec?.algorithms ?? DEFAULT.algorithms)
  return {
    settings: {
      algorithms,
      algs: [...algorithms].join(' '),
      maxAgeMs,
      maxProofBytes: spec?.max_proof_bytes ?? DEFAULT.max_proof_bytes,
      nonces,
      nonceSecretGiven: spec?.nonce?.secret !== undefined || spec?.nonce?.secret_file !== undefined,
      keys: previous?.keys ?? new ProofKeys(),
    },
    replayEntries: spec?.replay_cache?.max_entries ?? REPLAY_DEFAULT.max_entries,
  }
}
