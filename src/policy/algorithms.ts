// The signature algorithms a policy may name: the schema's enum, and the split the issuer
// compiler needs (a shared secret for HMAC, keys for the rest). Apart from schema_definition.ts,
// which the gateway does not load.
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const
/** What a DPoP proof may be signed with (RFC 9449 §4.2: asymmetric only): the above, and Ed25519 (RFC 9864's name for EdDSA over Ed25519). */
export const DPOP_ALGORITHMS = [...ASYMMETRIC_ALGORITHMS, 'Ed25519'] as const
