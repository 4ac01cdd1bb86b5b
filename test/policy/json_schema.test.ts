// The published JSON Schema is the loader's own schema, and the example policies point to it.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Ajv } from 'ajv'
import { parse } from 'yaml'
import { policyJsonSchema } from '../../src/policy/json_schema.js'
import { PolicySchema } from '../../src/policy/schema.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

t.test('jwtgate schema prints the schema generated from the definition, the one the gateway reads', async (t) => {
  const res = spawnSync(process.execPath, ['bin/jwtgate.js', 'schema'], { cwd: ROOT, encoding: 'utf8' })
  t.equal(res.status, 0)
  const printed = JSON.parse(res.stdout)
  t.same(printed, policyJsonSchema())
  t.same(printed, PolicySchema, 'the same schema the compilers read their defaults from')
})

t.test('schema/policy.schema.json in the repository is the generated schema (npm run schema writes it)', async (t) => {
  const committed = JSON.parse(readFileSync(`${ROOT}schema/policy.schema.json`, 'utf8'))
  t.same(committed, policyJsonSchema(), 'run `npm run build && npm run schema` after changing src/policy/schema_definition.ts')
})

t.test('the example policies reference the schema and are valid against it', async (t) => {
  const ajv = new Ajv({ strict: false, coerceTypes: true })
  const validate = ajv.compile(policyJsonSchema())
  for (const name of ['example.yaml', 'demo.yaml']) {
    const text = readFileSync(`${ROOT}config/${name}`, 'utf8')
    t.match(text.split('\n')[0], '# yaml-language-server: $schema=../schema/policy.schema.json', name)
    t.ok(validate(parse(text)), `${name}: ${JSON.stringify(validate.errors)}`)
  }
})

t.test('an editor finds mistakes with it', async (t) => {
  const validate = new Ajv({ strict: false }).compile(policyJsonSchema())
  t.notOk(
    validate(
      parse('version: 1\nlisten: { port: 1 }\nupstreams: { a: { url: "http://x" } }\nroutes: [ { path: /x, upstream: a, auth: none, methds: [GET] } ]\n'),
    ),
  )
})

t.test('it is a valid draft-07 schema, and carries the defaults for editors', async (t) => {
  const schema = policyJsonSchema() as { properties: Record<string, { properties?: Record<string, { default?: unknown }> }> }
  const ajv = new Ajv({ strict: false })
  t.ok(ajv.validateSchema(schema), JSON.stringify(ajv.errors))
  t.equal(schema.properties.listen!.properties!.host!.default, '0.0.0.0')
  t.equal(schema.properties.limits!.properties!.max_header_bytes!.default, 32_768)
})

t.test('the generated validator module is ASCII, and its descriptions decode to the definition', async (t) => {
  const { policySchemaModule } = await import('../../src/policy/json_schema.js')
  const source = policySchemaModule()
  // One non-ASCII character makes V8 keep the whole module source (held for the process's life) two bytes a character.
  t.notOk(/[\u0080-\uffff]/.test(source), 'no character outside ASCII')
  t.ok(source.includes('claim path \\u2192 condition'), 'the arrow of a description, escaped')
  const exported = /^export const policySchema = (.*)$/m.exec(source)![1]!
  t.same(JSON.parse(exported), policyJsonSchema(), 'the schema the module exports, characters and all')
})
