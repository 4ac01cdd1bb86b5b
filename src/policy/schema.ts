// The policy file's shape: the one definition the loader validates with, the types the compiler
// reads, and (later) the JSON Schema published for editors. Field docs live in docs/policy.md.
import Type, { type Static, type TSchema } from 'typebox'

/** A string enum that validates as `{type: string, enum}` so errors read "must be one of …". */
function StringEnum<T extends string[]>(values: [...T], options: object = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: values, ...options })
}

/**
 * A map whose keys follow `key` and whose every value is a `value`. (TypeBox's Record uses
 * patternProperties, which leaves entries with a non-matching key unchecked.)
 */
function NamedMap<V extends TSchema>(key: TSchema, value: V, options: object = {}) {
  return Type.Unsafe<Record<string, Static<V>>>({ type: 'object', propertyNames: key, additionalProperties: value, ...options })
}

// Durations are written "500ms", "30s", "10m", "1h" or as a plain number of seconds.
const Duration = Type.Union([
  Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' }),
  Type.Number({ minimum: 0 }),
], { description: 'a duration such as 500ms, 30s, 10m or 1h, or a number of seconds' })

export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const
// 'none' is not in the list, so the schema itself refuses it.
const Algorithm = StringEnum([...ASYMMETRIC_ALGORITHMS, ...HMAC_ALGORITHMS])

const Name = Type.String({ pattern: '^[A-Za-z0-9_.-]+$', minLength: 1, description: 'a name of letters, digits, "_", "." or "-"' })
const HeaderName = Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', minLength: 1, description: 'an HTTP header name' })
// A claim path: dot separated names (realm_access.roles); a name containing dots is written
// in double quotes ("https://example.com/roles").
const ClaimPath = Type.String({ minLength: 1 })

const Listen = Type.Object({
  host: Type.Optional(Type.String({ minLength: 1 })),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
}, { additionalProperties: false })

const JwksTuning = Type.Object({
  timeout: Type.Optional(Duration),
  cooldown: Type.Optional(Duration),
  min_age: Type.Optional(Duration),
  max_age: Type.Optional(Duration),
}, { additionalProperties: false })

const Issuer = Type.Object({
  issuer: Type.String({ minLength: 1 }),
  // URLs are parsed by the compiler (with a better message than a pattern could give, and
  // leaving ${VAR} alone in an editor).
  jwks_uri: Type.Optional(Type.String({ minLength: 1 })),
  secret: Type.Optional(Type.String()),
  secret_file: Type.Optional(Type.String({ minLength: 1 })),
  audiences: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  algorithms: Type.Array(Algorithm, { minItems: 1, uniqueItems: true }),
  clock_skew: Type.Optional(Duration),
  require_exp: Type.Optional(Type.Boolean()),
  jwks: Type.Optional(JwksTuning),
  optional_at_startup: Type.Optional(Type.Boolean()),
}, { additionalProperties: false })

const Upstream = Type.Object({
  url: Type.String({ minLength: 1 }),
  timeout: Type.Optional(Duration),
}, { additionalProperties: false })

const IdentityHeader = Type.Union([
  ClaimPath,
  Type.Object({
    claim: ClaimPath,
    join: Type.Optional(Type.String({ minLength: 1 })),
    json: Type.Optional(Type.Boolean()),
  }, { additionalProperties: false }),
], { description: 'a claim path, or an object with claim and join or json' })

const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'a string, number or boolean' })
const Scalars = Type.Array(Scalar, { minItems: 1 })
const ClaimCondition = Type.Object({
  equals: Type.Optional(Scalar),
  one_of: Type.Optional(Scalars),
  contains: Type.Optional(Scalar),
  contains_any: Type.Optional(Scalars),
  contains_all: Type.Optional(Scalars),
  matches: Type.Optional(Type.String({ minLength: 1, description: 'a regular expression that must match the whole string claim' })),
  exists: Type.Optional(Type.Boolean()),
}, { additionalProperties: false, minProperties: 1, description: 'a claim condition: equals, one_of, contains, contains_any, contains_all, matches or exists' })

// A requirement is one token check (issuers and what the token must carry) or a combination of
// requirements (any, all), nestable like Envoy's JwtRequirement. One object shape for all three,
// so a typo reads "unknown field" once; the compiler checks which fields go together.
const REQUIREMENT_REF = '#/definitions/requirement'
const NestedRequirement = Type.Unsafe<RequirementDocument>({ $ref: REQUIREMENT_REF })
function requirementFields() {
  return {
    issuers: Type.Optional(Type.Array(Name, { minItems: 1, uniqueItems: true, description: 'the issuers whose tokens meet this requirement' })),
    audiences: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: "accepted aud values, instead of the issuers' audiences" })),
    claims: Type.Optional(NamedMap(Type.String({ minLength: 1 }), ClaimCondition, { description: 'claim path → condition; all must hold' })),
    scopes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'scopes the token must grant (scope or scp)' })),
    require_claims: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true, description: 'claim paths the token must carry, such as jti or iat' })),
    max_age: Type.Optional(Duration),
    typ: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], { description: 'the accepted token header typ (such as at+jwt), or a list of them' })),
    any: Type.Optional(Type.Array(NestedRequirement, { minItems: 1, description: 'requirements of which at least one must be met' })),
    all: Type.Optional(Type.Array(NestedRequirement, { minItems: 1, description: 'requirements that must all be met' })),
  }
}
const Requirement = Type.Object(requirementFields(), { additionalProperties: false, minProperties: 1, description: 'a requirement: issuers (with optional audiences, claims, scopes, require_claims, max_age, typ), or any or all of requirements' })

/** A requirement as written; any and all nest. */
export interface RequirementDocument {
  issuers?: string[]
  audiences?: string[]
  claims?: Record<string, ClaimConditionDocument>
  scopes?: string[]
  require_claims?: string[]
  max_age?: string | number
  typ?: string | string[]
  any?: RequirementDocument[]
  all?: RequirementDocument[]
}

const RouteAuth = Type.Union([
  StringEnum(['none']),
  Type.Object({
    ...requirementFields(),
    optional: Type.Optional(Type.Boolean({ description: 'a request without a token is forwarded anonymously; a token that is sent must meet the requirement' })),
  }, { additionalProperties: false }),
], { description: '"none" or an object with issuers (and optional claims, scopes, …), any or all' })

const IdentityHeaders = NamedMap(HeaderName, IdentityHeader)

// CONNECT is absent: Node answers it outside the request path, so a route could never match it.
const Method = StringEnum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'])

const Route = Type.Object({
  path: Type.String({ pattern: '^/' }),
  host: Type.Optional(Type.String({ minLength: 1 })),
  methods: Type.Optional(Type.Array(Method, { minItems: 1, uniqueItems: true })),
  upstream: Name,
  auth: RouteAuth,
  forward_token: Type.Optional(Type.Boolean()),
  replay_protection: Type.Optional(Type.Boolean()),
  mode: Type.Optional(StringEnum(['enforce', 'report'], { description: 'enforce: refuse what the requirement refuses; report: log and count the decision, forward anyway' })),
  identity_headers: Type.Optional(IdentityHeaders),
  forward_payload_header: Type.Optional(Type.Union([Type.Literal(false), HeaderName], { description: 'a header name for the verified claims as base64url JSON, or false for none on this route' })),
}, { additionalProperties: false })

const Revocation = Type.Object({
  backend: StringEnum(['memory', 'file', 'redis']),
  on_backend_unavailable: Type.Optional(StringEnum(['fail_closed', 'serve_stale'])),
  max_token_lifetime: Type.Optional(Duration),
  file: Type.Optional(Type.Object({ path: Type.String({ minLength: 1 }) }, { additionalProperties: false })),
  redis: Type.Optional(Type.Object({
    url: Type.String({ minLength: 1 }),
    key_prefix: Type.Optional(Type.String({ minLength: 1 })),
    timeout: Type.Optional(Duration),
  }, { additionalProperties: false })),
  admin_token: Type.Optional(Type.String()),
  admin_token_file: Type.Optional(Type.String({ minLength: 1 })),
}, { additionalProperties: false })

export const PolicySchema = Type.Object({
  version: Type.Literal(1),
  listen: Listen,
  admin: Type.Optional(Type.Union([Type.Literal(false), Listen], { description: 'false, or an object with host and port' })),
  shutdown: Type.Optional(Type.Object({
    drain_delay: Type.Optional(Duration),
    timeout: Type.Optional(Duration),
  }, { additionalProperties: false })),
  issuers: Type.Optional(NamedMap(Name, Issuer)),
  upstreams: NamedMap(Name, Upstream, { minProperties: 1 }),
  identity_headers: Type.Optional(IdentityHeaders),
  forward_payload_header: Type.Optional(HeaderName),
  // Past Node's 16 KiB header section an upstream answers 431; a value over it is refused, never cut.
  identity_header_max_bytes: Type.Optional(Type.Integer({ minimum: 16, maximum: 16384, description: 'the longest identity header value sent; a longer one refuses the request' })),
  strip_header_prefixes: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9_-]+$' }))),
  reject_path_parameters: Type.Optional(Type.Boolean()),
  // Node refuses request headers above 16 KiB in all (431) before we see them.
  max_token_bytes: Type.Optional(Type.Integer({ minimum: 256, maximum: 16384 })),
  token_cache: Type.Optional(Type.Object({
    max_entries: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  }, { additionalProperties: false })),
  revocation: Type.Optional(Revocation),
  log: Type.Optional(Type.Object({
    level: Type.Optional(StringEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])),
  }, { additionalProperties: false })),
  routes: Type.Array(Route, { minItems: 1 }),
}, { additionalProperties: false, definitions: { requirement: Requirement } })

export type PolicyDocument = Static<typeof PolicySchema>
export type IssuerDocument = Static<typeof Issuer>
export type UpstreamDocument = Static<typeof Upstream>
export type RouteDocument = Static<typeof Route>
export type RevocationDocument = Static<typeof Revocation>
export type RouteAuthDocument = Static<typeof RouteAuth>
export type ClaimConditionDocument = Static<typeof ClaimCondition>
export type RouteRequirementDocument = Exclude<RouteAuthDocument, 'none'>
export type IdentityHeaderDocument = Static<typeof IdentityHeader>
