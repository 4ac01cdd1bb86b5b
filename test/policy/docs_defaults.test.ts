// docs/policy.md's Default columns say what the schema's `default` annotations say: the schema is
// the one source (the compilers read it), so the reference cannot drift from what runs.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { Ajv } from 'ajv'
import { parse } from 'yaml'
import { PolicySchema } from '../../src/policy/schema_definition.js'
import { fieldSchemas, type SchemaNode } from '../../src/policy/schema_walk.js'
import { secretKeyword } from '../../src/policy/json_schema.js'

const DOCS = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8')

// Where a section's table names its fields from; the other sections name them from the top.
const SECTION_PATHS: Record<string, string> = {
  issuers: 'issuers.*',
  'Key sets (`jwks_uri`)': 'issuers.*',
  upstreams: 'upstreams.*',
  identity_headers: 'identity_headers.*',
  revocation: 'revocation',
  routes: 'routes.*',
  cors: 'cors',
}

interface DocumentedDefault {
  section: string
  field: string
  path: string
  cell: string
  line: number
}

/** Every row of a table with a Default column, with the schema path its field names. */
function documentedDefaults(markdown: string): DocumentedDefault[] {
  const out: DocumentedDefault[] = []
  let section = ''
  let defaultColumn = -1
  markdown.split('\n').forEach((text, i) => {
    const heading = /^#{2,3} (.+)$/.exec(text)
    if (heading) section = heading[1]!
    if (!text.startsWith('|')) {
      defaultColumn = -1
      return
    }
    const cells = text
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim())
    if (cells[0] === 'Field') {
      defaultColumn = cells.indexOf('Default')
      return
    }
    if (defaultColumn < 0 || /^-+$/.test(cells[0]!)) return
    const field = /^`([^`]+)`$/.exec(cells[0]!)?.[1]
    if (!field) throw new Error(`docs/policy.md:${i + 1}: the Field cell is not one field name: ${cells[0]}`)
    const base = SECTION_PATHS[section]
    out.push({ section, field, path: base ? `${base}.${field}` : field, cell: cells[defaultColumn]!, line: i + 1 })
  })
  return out
}

/** The value a Default cell gives, when the whole cell is one `literal`; prose ("required", "none", a link) gives none. */
function literal(cell: string): { text: string } | undefined {
  const match = /^`([^`]+)`$/.exec(cell)
  return match ? { text: match[1]! } : undefined
}

function sameValue(text: string, value: unknown): boolean {
  // A string default is compared as written (`jwtgate:revocation:` is no YAML map); others as YAML.
  if (typeof value === 'string') return text === value
  return JSON.stringify(parse(text)) === JSON.stringify(value)
}

const schemas = new Map<string, SchemaNode[]>()
for (const [path, schema] of fieldSchemas(PolicySchema)) schemas.set(path, [...(schemas.get(path) ?? []), schema])
const defaultsAt = (path: string) => (schemas.get(path) ?? []).filter((s) => s.default !== undefined)

t.test("every documented default is the schema's", async (t) => {
  const rows = documentedDefaults(DOCS)
  t.ok(rows.length > 60, `the tables were read (${rows.length} rows)`)
  for (const row of rows) {
    const where = `docs/policy.md:${row.line} ${row.path}`
    if (!schemas.has(row.path)) {
      t.fail(`${where}: no such field in the schema`)
      continue
    }
    const defaults = defaultsAt(row.path).map((s) => s.default)
    const documented = literal(row.cell)
    if (!documented) {
      t.same(defaults, [], `${where}: "${row.cell}" names no value, and the schema has no default`)
      continue
    }
    t.equal(defaults.length, 1, `${where}: the schema has the default ${row.cell}`)
    if (defaults.length === 1) t.ok(sameValue(documented.text, defaults[0]), `${where}: ${row.cell} is the schema's ${JSON.stringify(defaults[0])}`)
  }
})

t.test('every default of the schema is documented', async (t) => {
  // A section such as cors or an identity header is one schema used in two places; documenting it once covers both.
  const documented = new Set<SchemaNode>()
  for (const row of documentedDefaults(DOCS)) for (const schema of schemas.get(row.path) ?? []) documented.add(schema)
  for (const [path, list] of schemas) {
    for (const schema of list)
      if (schema.default !== undefined) t.ok(documented.has(schema), `${path}: its default ${JSON.stringify(schema.default)} is in docs/policy.md`)
  }
})

t.test('every default is a value its field accepts', async (t) => {
  const ajv = new Ajv({ strict: false, keywords: [secretKeyword] })
  for (const [path, list] of schemas) {
    for (const schema of list) {
      if (schema.default === undefined) continue
      const { default: value, ...rest } = schema
      t.ok(ajv.validate(rest, value), `${path}: ${JSON.stringify(value)} ${JSON.stringify(ajv.errors)}`)
    }
  }
})

// A default that depends on another field (a token source's prefix) has no annotation and stays in prose.
t.test('a field with a default annotation does not repeat it in its description', async (t) => {
  for (const [path, list] of schemas) {
    for (const schema of list) {
      const description = (schema as { description?: string }).description ?? ''
      if (schema.default !== undefined) t.notMatch(description, /\bdefault\b/i, `${path}: "${description}"`)
    }
  }
})
