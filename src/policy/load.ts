// Reading a policy file: YAML → ${ENV} interpolation → schema validation → compilation.
// Every problem found on the way is reported with its file:line:col; nothing is returned
// unless the whole policy is good, so a bad file can never start or replace a good one. A
// draft (parsePolicyDraft) goes on past the schema's problems with the parts that have none,
// so that its compile reports the rest of them in the same run.
import { readFileSync } from 'node:fs'
import type { ErrorObject } from 'ajv'
import { validatePolicyDocument } from '#policy-schema'
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node, type YAMLError } from 'yaml'
import { markSecretParameters } from '../http/urls.js'
import { compilableParts, type LeftOut } from './compilable.js'
import { PolicySchema, type PolicyDocument } from './schema.js'
import { redactSecrets } from './secrets.js'
import { PolicyError, type DocPath, type PolicyProblem, type ProblemSink } from './problems.js'

export type Env = Readonly<Record<string, string | undefined>>

/** A parsed, interpolated and schema-valid policy document, with a way back to source positions. */
export interface PolicySource {
  file: string
  document: PolicyDocument
  /** sha256 of the file text, to tell one loaded policy from another. */
  text: string
  problems: ProblemSink & { list: PolicyProblem[] }
  /** The document with every secret hidden, as GET /config shows it (made here: it is document work, done off the event loop on a reload). */
  redacted: unknown
  /** A draft's: the parts of the file left out of `document` for their problems. */
  leftOut?: LeftOut
  /** Offline (`validate --offline`): what was taken as given instead of read, at its place: each ${VAR}, and each file the policy names (policy_files.ts). */
  unchecked?: ProblemSink & { list: PolicyProblem[] }
}

export interface ReadOptions {
  /**
   * For CI without the secrets: no environment variable is read (a ${VAR} without a fallback
   * is kept as written, and nothing is said about its value) and no file the policy names.
   */
  offline?: boolean
}

export function readPolicySource(file: string, env: Env = process.env): PolicySource {
  return parsePolicySource(file, readPolicyText(file), env)
}

/** A good policy's source; PolicyError with every problem the document has otherwise. */
export function parsePolicySource(file: string, text: string, env: Env = process.env): PolicySource {
  const source = parsePolicyDraft(file, text, env)
  if (source.problems.list.length) throw new PolicyError(source.problems.list)
  return source
}

/** readPolicySource, as a draft: see parsePolicyDraft. */
export function readPolicyDraft(file: string, env: Env = process.env, options: ReadOptions = {}): PolicySource {
  return parsePolicyDraft(file, readPolicyText(file), env, options)
}

/**
 * The source with the problems found so far (environment, fields) and a document of the parts
 * that have none (compilable.ts), for compilePolicy to find the rest and throw them all. Throws
 * PolicyError itself only when nothing more can be checked: a syntax error, a section the
 * compile cannot do without.
 */
export function parsePolicyDraft(file: string, text: string, env: Env = process.env, options: ReadOptions = {}): PolicySource {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false })
  // Values left as written (a variable not set): what is wrong with them is that, nothing more.
  const unknown: DocPath[] = []
  const problems = problemSink(file, doc, lineCounter, unknown)
  // After the first syntax error the parser's further complaints are mostly its consequences.
  const syntax = doc.errors[0] ?? doc.warnings[0]
  if (syntax) problems.list.push({ file, ...syntaxProblem(syntax, text.split('\n'), lineCounter) })
  if (problems.list.length) throw new PolicyError(problems.list)

  checkAliases(file, doc, lineCounter, problems.list)
  if (problems.list.length) throw new PolicyError(problems.list)
  const unchecked = options.offline ? problemSink(file, doc, lineCounter) : undefined
  unknown.push(...interpolate(doc, env, problems, unchecked))
  let document: unknown
  try {
    // Bounded: an alias bomb (a billion laughs) fails here instead of filling memory.
    document = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT })
  } catch (err) {
    problems.list.push({ file, line: 1, col: 1, message: `the policy cannot be read: ${(err as Error).message}` })
    throw new PolicyError(problems.list)
  }
  // Compiled at build time with the loader's options (json_schema.ts): it coerces ${VAR} strings
  // to the numbers the schema wants, and fills in no defaults.
  const errors = validatePolicyDocument(document) ? [] : readableErrors(validatePolicyDocument.errors ?? [])
  // The sink leaves out what is said about a value left as written.
  for (const e of errors) problems.add(e.path, e.message, e.at)
  const parts = errors.length
    ? compilableParts(
        document,
        errors.map((e) => e.path),
      )
    : { document: document as PolicyDocument, leftOut: undefined }
  if (!parts) throw new PolicyError(problems.list)
  const checked = parts.document
  // Before anything of this policy is shown: its redacted copy and every URL printed after it.
  markSecretParameters(checked.log?.redact_url_parameters ?? [])
  return {
    file,
    document: checked,
    text,
    problems,
    redacted: redactSecrets(PolicySchema, checked),
    ...(parts.leftOut ? { leftOut: parts.leftOut } : {}),
    ...(unchecked ? { unchecked } : {}),
  }
}

function readPolicyText(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new PolicyError([{ file, line: 1, col: 1, message: `cannot read policy: ${(err as Error).message}` }])
  }
}

const MAX_ALIAS_COUNT = 100

/**
 * A YAML syntax error in the words of the usual slip behind it, at the line to fix. The parser's
 * own message names the grammar rule, and for a line indented one space too far it points at
 * the line above: `Nested mappings are not allowed in compact mappings`.
 */
function syntaxProblem(error: YAMLError, lines: readonly string[], lineCounter: LineCounter): Omit<PolicyProblem, 'file'> {
  const at = lineCounter.linePos(error.pos[0])
  const message = error.message.split('\n')[0]!
  const source = lines[at.line - 1] ?? ''
  if (error.code === 'BLOCK_AS_IMPLICIT_KEY' || error.code === 'MULTILINE_IMPLICIT_KEY') {
    // `key: value` and then a line indented deeper: YAML reads that line as more of the value.
    const next = lines.findIndex((l, i) => i >= at.line && l.trim() !== '' && !l.trim().startsWith('#'))
    const key = /^(\s*(?:- )?)([^\s:#][^:#]*):/.exec(source)
    if (next >= 0 && key && indentOf(lines[next]!) > key[1]!.length) {
      const field = /^\s*([^\s:#][^:#]*):/.exec(lines[next]!)?.[1]
      return {
        line: next + 1,
        col: indentOf(lines[next]!) + 1,
        message: `${field ? `"${field}"` : 'this line'} is indented more than "${key[2]}" on line ${at.line}, which has its value on that line; a field beside "${key[2]}" starts at column ${key[1]!.length + 1}`,
      }
    }
  }
  if (error.code === 'TAB_AS_INDENT') return { ...at, message: `${message}; indent with spaces` }
  // A common trip: inside { } or [ ] YAML reads the braces of ${VAR} as syntax.
  if (/(^|[^$])[{[].*\$\{/.test(source)) return { ...at, message: `${message} (inside { } or [ ], put a value that uses \${...} in quotes)` }
  return { ...at, message }
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length
}

/**
 * Every alias must name an anchor defined before it. The usual cause is not YAML's alias syntax
 * at all but a value starting with * or & left unquoted (`host: *.example.com`), so say so.
 */
function checkAliases(file: string, doc: Document, lines: LineCounter, list: PolicyProblem[]): void {
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) !== undefined) return
      const { line, col } = lines.linePos(node.range?.[0] ?? 0)
      list.push({ file, line, col, message: `*${node.source} refers to no anchor; a value that starts with * or & must be quoted ("*${node.source}")` })
    },
  })
}

// ${NAME} is replaced by the environment variable NAME, ${NAME:-fallback} falls back when it is
// unset or empty, and $${ writes a literal ${. The value is taken as it is, never parsed as
// YAML: a secret with '#' or '[' in it stays whole.
const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/**
 * Substitutes every reference; returns the paths of the values it could not complete, which
 * stay as written: a variable that is not set (a problem), or offline (`unchecked`) any
 * variable without a fallback (noted as taken as given, never read).
 */
export function interpolate(doc: Document, env: Env, problems: ProblemSink, unchecked?: ProblemSink): DocPath[] {
  const unknown: DocPath[] = []
  visit(doc, {
    Scalar(key, node, path) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return
      const source = node.value
      const at = docPathOf(path, node)
      let missing = false
      const result = source.replace(REFERENCE, (match, name: string | undefined, fallback: string | undefined) => {
        if (match === '$${') return '${'
        const value = unchecked ? undefined : env[name!]
        if (value !== undefined && value !== '') return value
        if (fallback !== undefined) return fallback
        missing = true
        if (unchecked) unchecked.add(at, `\${${name}} taken as given (offline)`)
        else problems.add(at, `environment variable ${name} is not set`)
        return ''
      })
      if (missing) unknown.push(at)
      else node.value = result
    },
  })
  return unknown
}

/** The document path of a node from yaml's visitor ancestry. */
function docPathOf(ancestors: readonly unknown[], node: Node): DocPath {
  const out: Array<string | number> = []
  const chain = [...ancestors, node]
  for (let i = 0; i < chain.length - 1; i++) {
    const parent = chain[i]
    const child = chain[i + 1]
    if (isSeq(parent)) out.push(parent.items.indexOf(child as never))
    else if (isMap(parent)) {
      const pair = child as { key?: unknown }
      out.push(String(isScalar(pair.key) ? pair.key.value : pair.key))
    }
  }
  return out
}

/** A sink placing problems in this document; one at or under a path in `unknown` is left out. */
function problemSink(file: string, doc: Document, lines: LineCounter, unknown: readonly DocPath[] = []): ProblemSink & { list: PolicyProblem[] } {
  const list: PolicyProblem[] = []
  return {
    list,
    add(path, message, at = 'value') {
      if (unknown.length && unknown.some((u) => u.length <= path.length && u.every((s, i) => String(s) === String(path[i])))) return
      const offset = locate(doc, path, at)
      const { line, col } = lines.linePos(offset)
      list.push({ file, line, col, message })
    },
  }
}

/** The source offset of the node at `path` (or of its key), falling back to the nearest ancestor. */
function locate(doc: Document, path: DocPath, at: 'key' | 'value'): number {
  let node: unknown = doc.contents
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0
  for (let i = 0; i < path.length; i++) {
    const segment = path[i]
    const last = i === path.length - 1
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment))
      if (!pair) return offset
      const keyNode = pair.key as Node
      if (last && at === 'key') return keyNode.range?.[0] ?? offset
      node = pair.value
      offset = (pair.value as Node | null)?.range?.[0] ?? keyNode.range?.[0] ?? offset
    } else if (isSeq(node)) {
      node = node.items[Number(segment)]
      if (!node) return offset
      offset = (node as Node).range?.[0] ?? offset
    } else {
      return offset
    }
  }
  return offset
}

interface ReadableError {
  path: DocPath
  message: string
  at: 'key' | 'value'
}

/** Turns ajv's errors into one plain sentence per problem, as a person editing YAML would want them. */
export function readableErrors(errors: ErrorObject[]): ReadableError[] {
  const out: ReadableError[] = []
  const unionErrors = errors.filter((e) => e.keyword === 'anyOf')
  // The nearest union around an error: the same value or an enclosing one, and a schema path below the union's.
  const insideUnion = (e: ErrorObject) =>
    unionErrors
      .filter((u) => u !== e && e.schemaPath.startsWith(u.schemaPath + '/') && (e.instancePath + '/').startsWith(u.instancePath + '/'))
      .reduce<ErrorObject | undefined>((nearest, u) => (!nearest || u.schemaPath.length > nearest.schemaPath.length ? u : nearest), undefined)
  for (const e of errors) {
    // An error about a map key itself: its propertyNames error says it once, at the key.
    if ((e as { propertyName?: string }).propertyName !== undefined) continue
    const union = insideUnion(e)
    if (union) {
      // Keep a branch's own errors only when the value is an object and the branch is the
      // object form: then they say which field is wrong. Otherwise the union speaks once.
      const branch = /^\/(\d+)/.exec(e.schemaPath.slice(union.schemaPath.length))?.[1]
      const branchSchema = (union.schema as Array<{ type?: string }>)[Number(branch)]
      if (!isPlainObject(union.data) || branchSchema?.type !== 'object') continue
    }
    if (e.keyword === 'anyOf') {
      const objectBranch = (e.schema as Array<{ type?: string }>).some((s) => s.type === 'object')
      if (isPlainObject(e.data) && objectBranch) continue
      out.push({ path: pathOf(e), message: `${label(pathOf(e))} ${describe(e.parentSchema)}`, at: 'value' })
      continue
    }
    out.push(readable(e))
  }
  return out
}

function readable(e: ErrorObject): ReadableError {
  const path = pathOf(e)
  const where = label(path)
  const p = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'additionalProperties': {
      const name = String(p.additionalProperty)
      const known = Object.keys((e.parentSchema as { properties?: object })?.properties ?? {})
      const home = fieldOfSibling(name, e.parentSchema, e.data)
      const guess = closest(name, known)
      const hint = home ? ` (${name} goes inside ${home}: indent it under ${home}:)` : guess ? ` (did you mean "${guess}"?)` : ''
      return { path: [...path, name], message: `unknown field "${name}"${where ? ` in ${where}` : ''}${hint}`, at: 'key' }
    }
    case 'required':
      return { path, message: `missing required field "${String(p.missingProperty)}"${where ? ` in ${where}` : ''}`, at: 'key' }
    case 'enum':
      return { path, message: `${where} must be one of: ${(p.allowedValues as unknown[]).join(', ')}`, at: 'value' }
    case 'const':
      return { path, message: `${where} must be ${JSON.stringify(p.allowedValue)}`, at: 'value' }
    case 'pattern':
      return { path, message: `${where} ${describe(e.parentSchema) ?? `must match ${String(p.pattern)}`}`, at: 'value' }
    case 'propertyNames': {
      // At the bad name: what is wrong with it is the name's schema's description.
      const name = String(p.propertyName)
      const rule = (e.schema as { description?: string } | undefined)?.description
      return { path: [...path, name], message: `${where} has an invalid name "${name}"${rule ? `: it must be ${rule}` : ''}`, at: 'key' }
    }
    case 'type':
      // `scopes: orders:write` is one string where a list is wanted: show the list it meant.
      if (p.type === 'array' && isScalarValue(e.data)) {
        const key = path.at(-1)
        return { path, message: `${where} must be a list, as in ${typeof key === 'string' ? `${key}: ` : ''}[${String(e.data)}]`, at: 'value' }
      }
      // "must be a requirement: …" says more than "must be object", where the schema says what it is.
      return {
        path,
        message: `${where} ${(e.parentSchema as { description?: string } | undefined)?.description ? describe(e.parentSchema) : (e.message ?? 'is invalid')}`,
        at: 'value',
      }
    default:
      return { path, message: `${where} ${e.message ?? 'is invalid'}`, at: 'value' }
  }
}

function describe(schema: unknown): string {
  const description = (schema as { description?: string } | undefined)?.description
  return description ? `must be ${description}` : 'has the wrong type or form'
}

function pathOf(e: ErrorObject): DocPath {
  if (!e.instancePath) return []
  return e.instancePath
    .slice(1)
    .split('/')
    .map((s) => {
      const k = s.replace(/~1/g, '/').replace(/~0/g, '~')
      return /^\d+$/.test(k) ? Number(k) : k
    })
}

/** `routes[2].auth.issuers` for messages. */
export function label(path: DocPath): string {
  let out = ''
  for (const s of path) out += typeof s === 'number' ? `[${s}]` : out ? `.${s}` : s
  return out
}

/**
 * The field beside an unknown one whose own fields include it: `claims` written under a route,
 * one indentation step out of `auth`, belongs in `auth`. Only fields the map has are offered.
 */
function fieldOfSibling(name: string, parentSchema: unknown, data: unknown): string | undefined {
  const properties = (parentSchema as SchemaShape | undefined)?.properties ?? {}
  const present = isPlainObject(data) ? Object.keys(data as object) : []
  return present.find((k) => k !== name && Object.hasOwn(properties, k) && hasField(properties[k]!, name))
}

interface SchemaShape {
  properties?: Record<string, SchemaShape>
  anyOf?: SchemaShape[]
}

function hasField(schema: SchemaShape, name: string): boolean {
  return Object.hasOwn(schema.properties ?? {}, name) || (schema.anyOf ?? []).some((branch) => hasField(branch, name))
}

function isScalarValue(v: unknown): boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'
}

function isPlainObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The known name closest to a misspelt one, if it is close enough to be a likely typo. */
function closest(name: string, known: string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1
  for (const k of known) {
    const d = editDistance(name, k)
    if (d < bestDistance) {
      best = k
      bestDistance = d
    }
  }
  return best
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length]!
}
