// Which policy fields are secrets is said once, by a `secret` annotation on the field's schema
// in schema.ts. GET /config shows the policy redacted by walking it with the schema, so a new
// secret field is hidden by marking it, with no list to remember here.
import { redactUrl } from '../http/urls.js'
import { fieldSchemas, resolveRef, type SchemaNode, type SecretMark } from './schema_walk.js'

export type { SecretMark }

const HIDDEN = '[redacted]'

/** A deep copy of a schema-valid document with every value its schema marks secret hidden. */
export function redactSecrets(root: object, document: unknown): unknown {
  const definitions = (root as SchemaNode).definitions ?? {}
  const walk = (schema: SchemaNode, value: unknown): unknown => {
    if (schema.secret !== undefined) return hide(schema.secret, value)
    if (schema.$ref !== undefined) return walk(resolveRef(definitions, schema.$ref), value)
    if (schema.anyOf) return schema.anyOf.filter((branch) => fits(branch, value)).reduce((v, branch) => walk(branch, v), value)
    if (Array.isArray(value)) return schema.items ? value.map((item) => walk(schema.items!, item)) : value
    if (typeof value === 'object' && value !== null) {
      return Object.fromEntries(
        Object.entries(value).map(([key, v]) => {
          const field = schema.properties?.[key] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined)
          return [key, field ? walk(field, v) : v]
        }),
      )
    }
    return value
  }
  // Copied first: what is returned shares nothing with the document the compilers read.
  return walk(root as SchemaNode, JSON.parse(JSON.stringify(document)) as unknown)
}

/** Every place the schema marks secret, as a path (`issuers.*.secret`), with its mark. */
export function secretPaths(root: object): Map<string, SecretMark> {
  const out = new Map<string, SecretMark>()
  for (const [path, schema] of fieldSchemas(root)) if (schema.secret !== undefined) out.set(path, schema.secret)
  return out
}

function hide(mark: SecretMark, value: unknown): unknown {
  if (mark === 'url_credentials' && typeof value === 'string') return redactUrl(value)
  return HIDDEN
}

/** Whether a union branch is the one for this value: by its JSON type, or any branch that names none. */
function fits(schema: SchemaNode, value: unknown): boolean {
  const types = schema.type === undefined ? undefined : [schema.type].flat()
  if (!types) return true
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value
  return types.some((t) => t === type || (t === 'integer' && type === 'number'))
}
