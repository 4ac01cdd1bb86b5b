// The policy's JSON Schema for editors (yaml-language-server), made from the very schema the
// loader validates with, so the two cannot drift.
import { PolicySchema } from './schema.js'

export function policyJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'jwtgate policy',
    description: 'The route policy of the jwtgate JWT-enforcing reverse proxy. Reference: docs/policy.md',
    ...(JSON.parse(JSON.stringify(PolicySchema)) as Record<string, unknown>),
  }
}
