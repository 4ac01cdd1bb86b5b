// A policy field's default is written once, as the `default` annotation of its schema in
// schema.ts: the published JSON Schema shows it to editors, a test holds docs/policy.md to it,
// and the compilers read it here. (Not ajv's useDefaults: filling the document would change what
// GET /config shows, and the compilers could no longer tell a field left out from one written.)
import type { Static, TSchema } from 'typebox'

interface ObjectSchema {
  readonly properties: Readonly<Record<string, TSchema>>
}

/**
 * The defaults of the named fields of an object schema, typed as the fields are and frozen.
 * Throws when one has none: called when a module loads, so a lost annotation fails at once.
 */
export function defaultsOf<S extends ObjectSchema, K extends keyof S['properties'] & string>(
  schema: S,
  fields: readonly K[],
): { readonly [F in K]: Static<S['properties'][F]> } {
  const out: Record<string, unknown> = {}
  for (const field of fields) out[field] = defaultOf(schema.properties[field], field)
  return Object.freeze(out) as { readonly [F in K]: Static<S['properties'][F]> }
}

/** The `default` annotation of one schema, deep-copied and frozen so no compiled policy can change it. */
export function defaultOf<S extends TSchema>(schema: S | undefined, name = 'schema'): Static<S> {
  const annotation = (schema as { default?: unknown } | undefined)?.default
  if (annotation === undefined) throw new Error(`the policy schema gives no default for ${name}`)
  return deepFreezeCopy(annotation) as Static<S>
}

function deepFreezeCopy(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value)
    ? value.map(deepFreezeCopy)
    : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, deepFreezeCopy(v)]))
  return Object.freeze(copy)
}
