// `binding:` of an issuer or a route, compiled: which proof of possession a token's cnf is
// checked with (src/auth/binding.ts runs it).
export type BindingMethod = 'dpop' | 'mtls' | 'any' | 'none'

export interface BindingRule {
  readonly method: BindingMethod
  /** A token that is not bound is refused. */
  readonly required: boolean
}
