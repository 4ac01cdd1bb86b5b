// The policy schema as the gateway has it at run time: the JSON Schema `npm run build` generates
// from schema_definition.ts into dist/ (#policy-schema, package.json "imports"), with the types of
// that definition. The compilers read defaults from its sections (defaults.ts) and GET /config its
// secret marks (secrets.ts); TypeBox, which writes it, is not loaded.
import { policySchema } from '#policy-schema'
import type * as Definition from './schema_definition.js'
import { fieldSchemas, type SchemaNode } from './schema_walk.js'

export { ASYMMETRIC_ALGORITHMS, DPOP_ALGORITHMS, HMAC_ALGORITHMS } from './algorithms.js'
export type {
  BindingDocument,
  ClaimConditionDocument,
  ClientCertificateHeaderDocument,
  DpopDocument,
  CorsDocument,
  IdentityHeaderDocument,
  IssuerDocument,
  PolicyDocument,
  RequirementDocument,
  RevocationDocument,
  RouteAuthDocument,
  RouteDocument,
  RouteRequirementDocument,
  TokenSourceDocument,
  UpstreamDocument,
  UpstreamHealthDocument,
} from './schema_definition.js'

export const PolicySchema = policySchema as typeof Definition.PolicySchema
const FIELDS = fieldSchemas(policySchema)

// The sections whose fields have defaults, for defaultsOf() in the compilers beside their code.
export const AdminSchema = section<typeof Definition.AdminSchema>('admin')
export const BindingSchema = section<typeof Definition.BindingSchema>('issuers.*.binding')
export const DpopSchema = section<typeof Definition.DpopSchema>('dpop')
export const CorsSchema = section<typeof Definition.CorsSchema>('cors')
export const IdentityHeaderObjectSchema = section<typeof Definition.IdentityHeaderObjectSchema>('identity_headers.*')
export const IssuerSchema = section<typeof Definition.IssuerSchema>('issuers.*')
export const JwksTuningSchema = section<typeof Definition.JwksTuningSchema>('issuers.*.jwks')
export const RevocationSchema = section<typeof Definition.RevocationSchema>('revocation')
export const RouteSchema = section<typeof Definition.RouteSchema>('routes.*')
export const UpstreamSchema = section<typeof Definition.UpstreamSchema>('upstreams.*')
export const UpstreamHealthSchema = section<typeof Definition.UpstreamHealthSchema>('upstreams.*.health')

/** The object schema at a field path (a union's object branch where the field is a union). */
function section<S>(path: string): S {
  const found = FIELDS.find(([at, schema]: [string, SchemaNode]) => at === path && schema.properties !== undefined)
  if (!found) throw new Error(`the policy schema has no object at ${path}`)
  return found[1] as S
}
