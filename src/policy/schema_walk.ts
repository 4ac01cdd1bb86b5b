// The policy schema read as plain JSON Schema, for what its annotations say: `secret` marks
// (secrets.ts), and `default` values (the docs check in test/policy). A path names a field
// with `*` for any map key or list item: `issuers.*.jwks.timeout`.

/**
 * A `secret` annotation. true: the whole value is secret. 'url_credentials': a URL whose user
 * info and secret parameters are hidden (http/urls.ts redactUrl: a Redis URL's `?password=`, a
 * key set URL's `?api_key=`), the rest worth showing.
 */
export type SecretMark = true | 'url_credentials'

/** The parts of a JSON Schema the walkers follow, and the annotations they read. */
export interface SchemaNode {
  secret?: SecretMark
  default?: unknown
  type?: string | string[]
  $ref?: string
  anyOf?: SchemaNode[]
  properties?: Record<string, SchemaNode>
  additionalProperties?: SchemaNode | boolean
  items?: SchemaNode
  definitions?: Record<string, SchemaNode>
}

/**
 * Every schema in the tree with its path: a union's branches share the union's path, and a
 * definition is entered once (a requirement nests itself).
 */
export function fieldSchemas(root: object): Array<[path: string, schema: SchemaNode]> {
  const definitions = (root as SchemaNode).definitions ?? {}
  const out: Array<[string, SchemaNode]> = []
  const entered = new Set<string>()
  const walk = (schema: SchemaNode, path: string[]): void => {
    out.push([path.join('.'), schema])
    if (schema.$ref !== undefined && !entered.has(schema.$ref)) {
      entered.add(schema.$ref)
      walk(resolveRef(definitions, schema.$ref), path)
    }
    for (const branch of schema.anyOf ?? []) walk(branch, path)
    for (const [key, field] of Object.entries(schema.properties ?? {})) walk(field, [...path, key])
    if (typeof schema.additionalProperties === 'object') walk(schema.additionalProperties, [...path, '*'])
    if (schema.items) walk(schema.items, [...path, '*'])
  }
  walk(root as SchemaNode, [])
  return out
}

/** `#/definitions/name` in the root schema's definitions. */
export function resolveRef(definitions: Record<string, SchemaNode>, ref: string): SchemaNode {
  const name = /^#\/definitions\/(.+)$/.exec(ref)?.[1]
  const target = name === undefined ? undefined : definitions[name]
  if (!target) throw new Error(`the policy schema refers to ${ref}, which it does not define`)
  return target
}
