// `jwtgate revoke -c policy.yaml --jti ID [--exp UNIX]` and `--sub USER [--before UNIX]`, each
// with `--iss ISSUER` (tokens of that issuer only) or `--all-issuers` (the default):
// writes to the policy's revocation backend, as POST /revocations does. Every gateway on the
// same backend applies it: at once with redis, at its next file poll with file.
import { createLogger } from '../log.js'
import { loadPolicy, type CompiledPolicy } from '../policy/compile.js'
import { describeRevocation } from '../admin/revocations.js'
import { stopIssuers } from '../lifecycle/live_policy.js'
import { printPolicyError } from '../lifecycle/policy_error.js'

/** `iss`: the issuer the entry applies to; absent: every issuer (--all-issuers, or no flag). */
export type RevokeRequest = { policyFile: string; iss?: string } & ({ jti: string; exp?: number } | { sub: string; before?: number })

export async function runRevoke(request: RevokeRequest): Promise<number> {
  let policy: CompiledPolicy
  try {
    policy = loadPolicy(request.policyFile, createLogger('silent'))
  } catch (err) {
    return printPolicyError(err)
  }
  stopIssuers(policy)
  const store = policy.revocation?.store
  if (!store) {
    process.stderr.write(`jwtgate: ${request.policyFile} has no revocation: section\n`)
    return 1
  }
  if (store.settings.backend === 'memory') {
    process.stderr.write('jwtgate: the memory backend lives inside the gateway process; revoke with POST /revocations on its admin listener\n')
    return 1
  }
  try {
    const entry =
      'jti' in request ? await store.revokeJti(request.jti, request.exp, request.iss) : await store.revokeSubject(request.sub, request.before, request.iss)
    process.stdout.write(`${JSON.stringify(describeRevocation(entry))}\n`)
    return 0
  } catch (err) {
    process.stderr.write(`jwtgate: the revocation was not stored: ${(err as Error).message}\n`)
    return 1
  } finally {
    await store.stop()
  }
}
