// The policy file's shape, written with TypeBox: the one definition from which `npm run build`
// generates the JSON Schema (published for editors, read by the running gateway through
// schema.ts) and the validator the loader runs, and from which the compilers' types come.
// TypeBox is a build-time tool: nothing the gateway runs imports this module (schema.ts takes
// only its types). Field docs live in docs/policy.md.
// A field's default is its `default` annotation, read by the compilers through defaultsOf()
// (defaults.ts) and checked against docs/policy.md; a secret field carries `secret` (secrets.ts),
// which is all GET /config needs to redact it.
import Type, { type Static, type TSchema } from 'typebox'
import { ASYMMETRIC_ALGORITHMS, DPOP_ALGORITHMS, HMAC_ALGORITHMS } from './algorithms.js'

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
function Duration(options: { default?: string; description?: string } = {}) {
  return Type.Union([Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' }), Type.Number({ minimum: 0 })], {
    description: 'a duration such as 500ms, 30s, 10m or 1h, or a number of seconds',
    ...options,
  })
}

// 'none' is not in the list, so the schema itself refuses it.
const Algorithm = StringEnum([...ASYMMETRIC_ALGORITHMS, ...HMAC_ALGORITHMS])

const Name = Type.String({ pattern: '^[A-Za-z0-9_.-]+$', minLength: 1, description: 'a name of letters, digits, "_", "." or "-"' })
// RFC 9110 §5.6.2 token: header names, and cookie names too (RFC 6265 §4.1.1).
const TOKEN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
const HeaderName = Type.String({ pattern: TOKEN, minLength: 1, description: 'an HTTP header name' })
// A claim path: dot separated names (realm_access.roles); a name containing dots is written
// in double quotes ("https://example.com/roles").
const ClaimPath = Type.String({ minLength: 1 })

const Admin = Type.Object(
  {
    // Loopback: metrics, config and the status page are for the pod, not the network.
    host: Type.Optional(Type.String({ minLength: 1, default: '127.0.0.1' })),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    // Required for every admin path but /healthz, /readyz (and /metrics when metrics_public).
    token: Type.Optional(Type.String({ secret: true, description: 'the admin bearer token, at least 16 bytes' })),
    token_file: Type.Optional(Type.String({ minLength: 1, description: "a file holding the admin token; relative to the policy file's directory" })),
    metrics_public: Type.Optional(Type.Boolean({ default: false, description: 'with token: /metrics is served without it' })),
    status: Type.Optional(
      Type.Object(
        {
          // A subject is personal data: shown only when asked for.
          show_subjects: Type.Optional(Type.Boolean({ default: false, description: "the status page's recent refusals show the token's sub" })),
          recent_refusals: Type.Optional(
            Type.Integer({ minimum: 0, maximum: 10000, default: 100, description: 'how many refused requests the status page keeps, newest first' }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
)

// PEM files; a relative path is relative to the policy file's directory.
const PemFile = Type.String({ minLength: 1, description: "a PEM file; relative to the policy file's directory" })

// The HTTP versions a listener or an upstream speaks: HTTP/1.1, HTTP/2 in clear with prior
// knowledge (h2c), HTTP/2 over TLS chosen by ALPN (h2).
const Protocol = StringEnum(['http1', 'h2c', 'h2'])

const Listen = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1, default: '0.0.0.0' })),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    reuse_port: Type.Optional(
      Type.Boolean({
        default: true,
        description:
          'with workers > 1: each worker listens on the port itself (SO_REUSEPORT) and the kernel spreads connections; false: the primary accepts them and hands them round-robin; read at start',
      }),
    ),
    protocols: Type.Optional(
      Type.Array(Protocol, {
        minItems: 1,
        uniqueItems: true,
        default: ['http1'],
        description:
          'what the proxy listener speaks: http1, h2c (HTTP/2 in clear, prior knowledge; not with tls), h2 (HTTP/2 over TLS by ALPN; needs tls); http1 and h2c together share the port',
      }),
    ),
    tls: Type.Optional(
      Type.Object(
        {
          cert_file: PemFile,
          key_file: PemFile,
          client_certificates: Type.Optional(
            Type.Object(
              {
                ca_file: Type.Optional(PemFile),
                required: Type.Optional(
                  Type.Boolean({ default: false, description: 'true: a client without a certificate the CA signed cannot connect (needs ca_file)' }),
                ),
              },
              {
                additionalProperties: false,
                description:
                  'ask clients for a TLS certificate, for certificate-bound tokens (RFC 8705); with ca_file only certificates it signed count, without it any certificate the client holds the key of',
              },
            ),
          ),
        },
        {
          additionalProperties: false,
          description: 'terminate TLS: the certificate chain and its private key, re-read when they change; client_certificates asks clients for theirs',
        },
      ),
    ),
  },
  { additionalProperties: false },
)

const JwksTuning = Type.Object(
  {
    timeout: Type.Optional(Duration({ default: '5s' })),
    cooldown: Type.Optional(Duration({ default: '30s' })),
    min_age: Type.Optional(Duration({ default: '30s' })),
    max_age: Type.Optional(Duration({ default: '10m' })),
  },
  { additionalProperties: false },
)

// Where a token is read from. One object with exactly one of header, cookie or query (checked
// by the compiler, whose message is plainer than a union's).
const TokenSource = Type.Object(
  {
    header: Type.Optional(HeaderName),
    prefix: Type.Optional(
      Type.String({ description: 'the text before the token in the header, compared ignoring case ("Bearer " for Authorization by default)' }),
    ),
    cookie: Type.Optional(Type.String({ pattern: TOKEN, minLength: 1, description: 'a cookie name' })),
    query: Type.Optional(Type.String({ minLength: 1, description: 'a query parameter carrying the token; removed before forwarding' })),
  },
  { additionalProperties: false, description: 'where a token is read: { header, prefix }, { cookie } or { query }' },
)
function TokenSources(options: { default?: Array<Static<typeof TokenSource>> } = {}) {
  return Type.Array(TokenSource, { minItems: 1, description: 'where tokens are read, tried in order', ...options })
}

/** At most this many shared secrets per issuer: each token without a matching kid may be tried against every one. */
export const MAX_ISSUER_SECRETS = 4

// One shared secret of an issuer's `secrets` list: secret or secret_file (checked by the compiler).
const IssuerSecret = Type.Object(
  {
    kid: Type.Optional(Type.String({ minLength: 1, description: 'the kid of the tokens it signs: a token with this kid is checked with this secret only' })),
    secret: Type.Optional(Type.String({ secret: true })),
    secret_file: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false, description: 'a shared HMAC secret (secret or secret_file), with the kid of its tokens if they carry one' },
)

// Sender-constrained tokens: which proof of possession a token's cnf is checked with.
const Binding = Type.Object(
  {
    method: StringEnum(['dpop', 'mtls', 'any', 'none'], {
      description:
        'dpop: cnf.jkt checked against a DPoP proof (RFC 9449); mtls: cnf.x5t#S256 against the client certificate (RFC 8705); any: either; none: cnf is not looked at',
    }),
    required: Type.Optional(Type.Boolean({ default: false, description: 'true: a token that is not bound is refused (unbound_token)' })),
  },
  { additionalProperties: false, description: 'sender-constrained tokens: a bound token is always checked; required refuses unbound ones' },
)

const Issuer = Type.Object(
  {
    issuer: Type.String({ minLength: 1, description: "the exact iss of the tokens; {tid} stands for the token's tid claim in a multi-tenant issuer" }),
    issuer_aliases: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        uniqueItems: true,
        description: 'other exact iss values the same issuer writes (accounts.google.com besides https://accounts.google.com)',
      }),
    ),
    tenants: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        uniqueItems: true,
        description: 'the tenants accepted by a multi-tenant issuer ({tid} in issuer)',
      }),
    ),
    audience_claim: Type.Optional(
      Type.String({
        minLength: 1,
        default: 'aud',
        description: 'the claim checked against audiences instead of aud (client_id for AWS Cognito access tokens, azp)',
      }),
    ),
    // URLs are parsed by the compiler (with a better message than a pattern could give, and
    // leaving ${VAR} alone in an editor).
    // Its user info and secret query parameters (an API key some IdP gateways want) are hidden
    // in /config and in log lines (http/urls.ts redactUrl).
    jwks_uri: Type.Optional(Type.String({ minLength: 1, secret: 'url_credentials' })),
    discovery: Type.Optional(
      Type.Boolean({ default: false, description: 'true: read jwks_uri from {issuer}/.well-known/openid-configuration (OIDC Discovery)' }),
    ),
    // RFC 6750 §2.1.
    token_sources: Type.Optional(TokenSources({ default: [{ header: 'Authorization', prefix: 'Bearer ' }] })),
    secret: Type.Optional(Type.String({ secret: true })),
    secret_file: Type.Optional(Type.String({ minLength: 1 })),
    secrets: Type.Optional(
      Type.Array(IssuerSecret, {
        minItems: 1,
        maxItems: MAX_ISSUER_SECRETS,
        description: 'shared HMAC secrets, the newest first, to rotate them: tried by kid, or in order',
      }),
    ),
    audiences: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    algorithms: Type.Array(Algorithm, { minItems: 1, uniqueItems: true }),
    clock_skew: Type.Optional(Duration({ default: '30s' })),
    require_exp: Type.Optional(Type.Boolean({ default: true })),
    jwks: Type.Optional(JwksTuning),
    optional_at_startup: Type.Optional(Type.Boolean({ default: false })),
    binding: Type.Optional(Binding),
  },
  { additionalProperties: false },
)

// Names as Envoy's HTTP health check has them (path, interval, timeout, the two thresholds); its
// gRPC health check's service_name is `service` here, with `grpc: true`.
const UpstreamHealth = Type.Object(
  {
    path: Type.Optional(
      Type.String({ pattern: '^/[^\\s#]*$', description: "the absolute path (and query) GET on the upstream's origin; required unless grpc" }),
    ),
    grpc: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'call the standard gRPC health service (grpc.health.v1.Health/Check) instead of GET path; needs protocol h2c or h2',
      }),
    ),
    service: Type.Optional(
      Type.String({
        maxLength: 200,
        description: 'with grpc: the service name the health check asks about; left out (or empty) for the whole server',
      }),
    ),
    interval: Type.Optional(Duration({ default: '5s' })),
    timeout: Type.Optional(Duration({ default: '1s' })),
    healthy_threshold: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: 1, description: 'passed checks in a row that make an unhealthy upstream healthy' }),
    ),
    unhealthy_threshold: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: 3, description: 'failed checks in a row that make a healthy upstream unhealthy' }),
    ),
  },
  { additionalProperties: false, description: 'a background check of the upstream; /readyz is not ready while it fails' },
)

const Upstream = Type.Object(
  {
    url: Type.String({ minLength: 1, secret: 'url_credentials' }),
    protocol: Type.Optional(
      StringEnum(['http1', 'h2c', 'h2'], {
        default: 'http1',
        description: 'how requests reach it: http1, h2c (HTTP/2 in clear, http:// url) or h2 (HTTP/2 over TLS, https:// url); gRPC routes need h2c or h2',
      }),
    ),
    health: Type.Optional(UpstreamHealth),
    // The longest a request waits for a free connection (then 503), then for each part of the answer (then 504).
    timeout: Type.Optional(Duration({ default: '30s' })),
    connections: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096, default: 128, description: 'the most connections open to this upstream at once' })),
    tls: Type.Optional(
      Type.Object(
        {
          ca_file: Type.Optional(PemFile),
          cert_file: Type.Optional(PemFile),
          key_file: Type.Optional(PemFile),
        },
        {
          additionalProperties: false,
          description: 'for an https upstream: the CA to verify it with (instead of the system CAs), and a client certificate for mTLS',
        },
      ),
    ),
  },
  { additionalProperties: false },
)

const IdentityHeaderObject = Type.Object(
  {
    claim: ClaimPath,
    join: Type.Optional(Type.String({ minLength: 1, default: ',' })),
    json: Type.Optional(Type.Boolean({ default: false })),
  },
  { additionalProperties: false },
)
const IdentityHeader = Type.Union([ClaimPath, IdentityHeaderObject], { description: 'a claim path, or an object with claim and join or json' })

const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'a string, number or boolean' })
const Scalars = Type.Array(Scalar, { minItems: 1 })
const ClaimCondition = Type.Object(
  {
    equals: Type.Optional(Scalar),
    one_of: Type.Optional(Scalars),
    contains: Type.Optional(Scalar),
    contains_any: Type.Optional(Scalars),
    contains_all: Type.Optional(Scalars),
    matches: Type.Optional(Type.String({ minLength: 1, description: 'a regular expression that must match the whole string claim' })),
    exists: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1, description: 'a claim condition: equals, one_of, contains, contains_any, contains_all, matches or exists' },
)

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
    require_claims: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true, description: 'claim paths the token must carry, such as jti or iat' }),
    ),
    max_age: Type.Optional(Duration()),
    typ: Type.Optional(
      Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], {
        description: 'the accepted token header typ (such as at+jwt), or a list of them',
      }),
    ),
    any: Type.Optional(Type.Array(NestedRequirement, { minItems: 1, description: 'requirements of which at least one must be met' })),
    all: Type.Optional(Type.Array(NestedRequirement, { minItems: 1, description: 'requirements that must all be met' })),
  }
}
const Requirement = Type.Object(requirementFields(), {
  additionalProperties: false,
  minProperties: 1,
  description: 'a requirement: issuers (with optional audiences, claims, scopes, require_claims, max_age, typ), or any or all of requirements',
})

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

const RouteAuth = Type.Union(
  [
    StringEnum(['none']),
    Type.Object(
      {
        ...requirementFields(),
        optional: Type.Optional(
          Type.Boolean({ description: 'a request without a token is forwarded anonymously; a token that is sent must meet the requirement' }),
        ),
        binding: Type.Optional(Binding),
      },
      { additionalProperties: false },
    ),
  ],
  { description: '"none" or an object with issuers (and optional claims, scopes, …), any or all' },
)

const IdentityHeaders = NamedMap(HeaderName, IdentityHeader)

// CONNECT is absent: Node answers it outside the request path, so a route could never match it.
const Method = StringEnum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'])

const Cors = Type.Object(
  {
    origins: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1,
      uniqueItems: true,
      description: 'exact origins such as https://app.example.com, or ["*"] (not with credentials)',
    }),
    methods: Type.Optional(
      Type.Array(Method, { minItems: 1, uniqueItems: true, default: ['GET', 'HEAD', 'POST'], description: 'methods a preflight may ask for' }),
    ),
    // A bearer token rides in Authorization, which is never CORS-safelisted.
    headers: Type.Optional(
      Type.Array(HeaderName, { uniqueItems: true, default: ['authorization', 'content-type'], description: 'request headers a preflight may ask for' }),
    ),
    expose_headers: Type.Optional(Type.Array(HeaderName, { uniqueItems: true, description: 'response headers the browser lets the page read' })),
    credentials: Type.Optional(Type.Boolean({ default: false, description: 'allow cookies and other credentials (Access-Control-Allow-Credentials)' })),
    max_age: Type.Optional(Duration()),
  },
  { additionalProperties: false, description: 'cross-origin requests from browsers: the gateway answers preflights itself' },
)

const Route = Type.Object(
  {
    name: Type.Optional(
      Type.String({
        pattern: '^[a-z0-9][a-z0-9_.-]*$',
        maxLength: 64,
        description: 'a name of lowercase letters, digits, "_", "." or "-", unique among the routes: the route label in metrics, logs, explain and test',
      }),
    ),
    path: Type.String({ pattern: '^/' }),
    host: Type.Optional(Type.String({ minLength: 1 })),
    methods: Type.Optional(Type.Array(Method, { minItems: 1, uniqueItems: true })),
    upstream: Name,
    auth: RouteAuth,
    forward_token: Type.Optional(Type.Boolean({ default: false })),
    forward_dpop_proof: Type.Optional(Type.Boolean({ default: false, description: 'pass the DPoP header on to the upstream' })),
    token_sources: Type.Optional(TokenSources()),
    replay_protection: Type.Optional(Type.Boolean({ default: false })),
    mode: Type.Optional(
      StringEnum(['enforce', 'report'], {
        default: 'enforce',
        description: 'enforce: refuse what the requirement refuses; report: log and count the decision, forward anyway',
      }),
    ),
    identity_headers: Type.Optional(IdentityHeaders),
    forward_payload_header: Type.Optional(
      Type.Union([Type.Literal(false), HeaderName], {
        description: 'a header name for the verified claims as base64url JSON, or false for none on this route',
      }),
    ),
    cors: Type.Optional(Type.Union([Type.Literal(false), Cors], { description: 'false, or CORS settings replacing the global cors for this route' })),
    websocket: Type.Optional(
      Type.Boolean({ default: false, description: 'proxy WebSocket upgrades on this route, after checking the token on the upgrade request' }),
    ),
    grpc: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'the route carries gRPC: its upstream must speak HTTP/2 (protocol h2c or h2), checked at load',
      }),
    ),
    max_body_bytes: Type.Optional(
      Type.Integer({ minimum: 0, description: 'the largest request body on this route, in bytes; larger gets 413; 0 for no limit' }),
    ),
    // Envoy's route max_grpc_timeout: a client's deadline is its word, so it gets a ceiling.
    max_grpc_timeout: Type.Optional(
      Duration({
        default: '1h',
        description: 'the longest deadline (grpc-timeout) a gRPC call on this route gets: a longer one is cut to it, also for the upstream; 0 for no limit',
      }),
    ),
    allow_ambiguous_paths: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'forward paths an upstream could read as another path by decoding them twice (%252e) or by Unicode NFKC (the fullwidth solidus) instead of refusing them with 400 bad_path',
      }),
    ),
  },
  { additionalProperties: false },
)

const Revocation = Type.Object(
  {
    backend: StringEnum(['memory', 'file', 'redis']),
    on_backend_unavailable: Type.Optional(StringEnum(['fail_closed', 'serve_stale'], { default: 'serve_stale' })),
    max_token_lifetime: Type.Optional(Duration({ default: '24h' })),
    file: Type.Optional(Type.Object({ path: Type.String({ minLength: 1 }) }, { additionalProperties: false })),
    redis: Type.Optional(
      Type.Object(
        {
          // A redis URL may carry a password, in its user info or as ?password=.
          url: Type.String({ minLength: 1, secret: 'url_credentials' }),
          key_prefix: Type.Optional(Type.String({ minLength: 1, default: 'jwtgate:revocation:' })),
          timeout: Type.Optional(Duration({ default: '1s' })),
        },
        { additionalProperties: false },
      ),
    ),
    admin_token: Type.Optional(Type.String({ secret: true })),
    admin_token_file: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
)

// DPoP proofs (RFC 9449), for issuers and routes whose binding is dpop or any.
const Dpop = Type.Object(
  {
    algorithms: Type.Optional(
      Type.Array(StringEnum([...DPOP_ALGORITHMS]), {
        minItems: 1,
        uniqueItems: true,
        default: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519'],
        description: 'the algorithms a proof may be signed with; asymmetric only',
      }),
    ),
    proof_max_age: Type.Optional(Duration({ default: '60s', description: "how far a proof's iat may be from the gateway's clock, either way" })),
    max_proof_bytes: Type.Optional(Type.Integer({ minimum: 512, maximum: 16_384, default: 4096, description: 'the largest DPoP header; larger gets 401' })),
    replay_cache: Type.Optional(
      Type.Object(
        {
          max_entries: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 10_000_000,
              default: 100_000,
              description: 'proofs remembered in memory (per process, when revocation.backend is not redis); when full, new proofs get 503',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    nonce: Type.Optional(
      Type.Object(
        {
          secret: Type.Optional(Type.String({ minLength: 32, secret: true })),
          secret_file: Type.Optional(Type.String({ minLength: 1 })),
          lifetime: Type.Optional(Duration({ default: '5m', description: 'how long a nonce handed out is accepted' })),
        },
        {
          additionalProperties: false,
          description:
            'require server nonces in proofs (RFC 9449 §9); the secret (32 bytes or more) must be the same on every replica; without one, each process makes its own',
        },
      ),
    ),
  },
  { additionalProperties: false },
)

// Behind a TLS-terminating proxy: where it passes the client certificate on (RFC 8705 bindings).
const ClientCertificateHeader = Type.Object(
  {
    name: HeaderName,
    format: StringEnum(['xfcc', 'pem'], {
      description: "xfcc: Envoy's x-forwarded-client-cert (Hash or Cert); pem: a URL-encoded PEM certificate (nginx $ssl_client_escaped_cert, AWS ALB)",
    }),
  },
  { additionalProperties: false, description: 'read only from trusted_proxies; removed from every request before forwarding' },
)

export const PolicySchema = Type.Object(
  {
    version: Type.Literal(1),
    listen: Listen,
    admin: Type.Optional(
      Type.Union([Type.Literal(false), Admin], { default: { host: '127.0.0.1', port: 9901 }, description: 'false, or an object with host and port' }),
    ),
    shutdown: Type.Optional(
      Type.Object(
        {
          drain_delay: Type.Optional(Duration({ default: '5s' })),
          timeout: Type.Optional(Duration({ default: '30s' })),
        },
        { additionalProperties: false },
      ),
    ),
    workers: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: 64 }), Type.Literal('auto')], {
        default: 1,
        description: 'processes serving the proxy listener: 1 to 64, or auto for one per available core; read at start',
      }),
    ),
    issuers: Type.Optional(NamedMap(Name, Issuer)),
    upstreams: NamedMap(Name, Upstream, { minProperties: 1 }),
    identity_headers: Type.Optional(IdentityHeaders),
    forward_payload_header: Type.Optional(HeaderName),
    // Past Node's 16 KiB header section an upstream answers 431; a value over it is refused, never cut.
    // Far above a user id or a few roles, well below Node's 16 KiB for a whole header section.
    identity_header_max_bytes: Type.Optional(
      Type.Integer({ minimum: 16, maximum: 16384, default: 4096, description: 'the longest identity header value sent; a longer one refuses the request' }),
    ),
    strip_header_prefixes: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9_-]+$' }), { default: ['x-jwt-', 'x-auth-'] })),
    reject_path_parameters: Type.Optional(Type.Boolean({ default: true })),
    // Below limits.max_header_bytes, checked by the compiler: Node refuses a larger header section (431).
    max_token_bytes: Type.Optional(Type.Integer({ minimum: 256, maximum: 1_048_576, default: 16_384 })),
    limits: Type.Optional(
      Type.Object(
        {
          // Node's own default is 16 KiB for the whole header section, which a 16 KiB token alone fills.
          max_header_bytes: Type.Optional(
            Type.Integer({ minimum: 4096, maximum: 1_048_576, default: 32_768, description: 'the largest request header section; larger gets 431' }),
          ),
          max_body_bytes: Type.Optional(
            Type.Integer({ minimum: 0, default: 0, description: 'the largest request body, in bytes, on routes that set none; 0 for no limit' }),
          ),
          // Slow clients (docs/security.md, "Slow clients"): each bound below keeps a client that
          // sends or reads slowly from holding a gateway connection, or an upstream one, for long.
          // The longest a client may take to send the request line and headers, then 408. Clients
          // send a header section in one go: 10 s is far above that (Node's own: 60 s).
          headers_timeout: Type.Optional(Duration({ default: '10s' })),
          // The longest a client may take to send a whole request, body included, then 408; 0 for none.
          // Node's own default, which fastify would otherwise turn off; min_body_rate cuts stalls far sooner.
          request_timeout: Type.Optional(Duration({ default: '300s' })),
          // Apache's mod_reqtimeout asks 500 bytes/s; a stalled upload is cut after one window.
          min_body_rate: Type.Optional(
            Type.Integer({
              minimum: 0,
              default: 1024,
              description: 'bytes per second a request body must average over each body_rate_window while it streams; slower gets 408; 0 for no minimum',
            }),
          ),
          // The window min_body_rate is measured over.
          body_rate_window: Type.Optional(Duration({ default: '10s' })),
          // The longest a response may wait for a client that does not read it; then the connection and
          // the upstream request are closed. nginx's send_timeout (60 s); half frees an upstream sooner.
          send_timeout: Type.Optional(Duration({ default: '30s' })),
          max_connections: Type.Optional(
            Type.Integer({ minimum: 0, default: 10_000, description: 'client connections open at once, per worker; more are closed at once; 0 for no cap' }),
          ),
          max_connections_per_address: Type.Optional(
            Type.Integer({
              minimum: 0,
              default: 256,
              description: 'client connections open at once from one address (trusted_proxies excepted), per worker; 0 for no cap',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    cors: Type.Optional(Cors),
    require_https: Type.Optional(
      Type.Boolean({ default: false, description: 'redirect (GET, HEAD: 308) or refuse (403) requests that did not arrive over HTTPS' }),
    ),
    trusted_proxies: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true, description: 'CIDRs of proxies whose X-Forwarded-Proto is believed, such as 10.0.0.0/8' }),
    ),
    token_cache: Type.Optional(
      Type.Object(
        {
          // Enough for the active tokens of a busy service.
          max_entries: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, default: 10_000 })),
          // The heap the entries may hold, as token_cache.ts entryBytes counts it (token, parsed
          // claims): 32 MiB fits 10,000 ordinary tokens (~3 KiB each counted) and bounds large
          // ones (a 15 KiB token with big group claims counts ~40 KiB: ~800 of them).
          max_bytes: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 8 * 1024 ** 3,
              default: 32 * 1024 * 1024,
              description: 'the most memory the verified tokens may take, in bytes (token plus parsed claims, approximated)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    revocation: Type.Optional(Revocation),
    dpop: Type.Optional(Dpop),
    client_certificate_header: Type.Optional(ClientCertificateHeader),
    binding_header: Type.Optional(
      Type.String({
        pattern: TOKEN,
        minLength: 1,
        description: 'a header telling the upstream how the token was sender-constrained: dpop, mtls, "dpop mtls" or none',
      }),
    ),
    log: Type.Optional(
      Type.Object(
        {
          level: Type.Optional(StringEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' })),
          access: Type.Optional(Type.Boolean({ default: true, description: 'Whether to write one access line per request (at info).' })),
          time: Type.Optional(
            StringEnum(['epoch', 'iso'], {
              default: 'epoch',
              description:
                'How every line writes `time`: epoch, milliseconds since 1970 as a number; iso, an ISO-8601 UTC string with milliseconds. Takes effect at the next restart.',
            }),
          ),
          level_label: Type.Optional(
            Type.Boolean({
              default: false,
              description: 'Write `level` as its name ("info") instead of its number (30). Takes effect at the next restart.',
            }),
          ),
          redact_url_parameters: Type.Optional(
            Type.Array(Type.String({ pattern: '^[A-Za-z0-9._~-]+$' }), {
              description:
                'Further URL query parameters whose values are secrets (a vendor API key with its own name): hidden, like the built-in list, wherever jwtgate shows a URL (GET /config, log lines, problem messages). Compared like the built-in names: case, -, _ and . ignored, a name also matching as a suffix.',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    routes: Type.Array(Route, { minItems: 1 }),
  },
  { additionalProperties: false, definitions: { requirement: Requirement } },
)

export type PolicyDocument = Static<typeof PolicySchema>
export type IssuerDocument = Static<typeof Issuer>
export type UpstreamDocument = Static<typeof Upstream>
export type UpstreamHealthDocument = Static<typeof UpstreamHealth>
export type RouteDocument = Static<typeof Route>
export type CorsDocument = Static<typeof Cors>
export type RevocationDocument = Static<typeof Revocation>
export type RouteAuthDocument = Static<typeof RouteAuth>
export type ClaimConditionDocument = Static<typeof ClaimCondition>
export type RouteRequirementDocument = Exclude<RouteAuthDocument, 'none'>
export type IdentityHeaderDocument = Static<typeof IdentityHeader>
export type TokenSourceDocument = Static<typeof TokenSource>
export type BindingDocument = Static<typeof Binding>
export type DpopDocument = Static<typeof Dpop>
export type ClientCertificateHeaderDocument = Static<typeof ClientCertificateHeader>

// The sections whose fields have defaults, for defaultsOf() in the compilers beside their code.
export {
  Admin as AdminSchema,
  Binding as BindingSchema,
  Dpop as DpopSchema,
  Cors as CorsSchema,
  IdentityHeaderObject as IdentityHeaderObjectSchema,
  Issuer as IssuerSchema,
  JwksTuning as JwksTuningSchema,
  Revocation as RevocationSchema,
  Route as RouteSchema,
  Upstream as UpstreamSchema,
  UpstreamHealth as UpstreamHealthSchema,
}
