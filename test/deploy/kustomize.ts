// A small renderer of the kustomization subset deploy/kubernetes uses, so the tests read what
// `kubectl kustomize <dir>` would print (kubectl is not on the test machines, and no npm package
// renders kustomizations). It knows: resources (files and directories), configMapGenerator (files
// and literals, with kustomize's name hash and the renaming of pod volume and env references),
// patches given as RFC 6902 JSON patches with a target, labels without selectors, and namespace.
// Anything else in a kustomization.yaml is an error here, not silently skipped: teach it first.
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { parse, parseAllDocuments } from 'yaml'

/* eslint-disable @typescript-eslint/no-explicit-any */
export type KubeObject = any

const KNOWN = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'patches', 'labels', 'namespace'])

/** The objects `kubectl kustomize dir` would print (in no particular order). */
export function kustomize(dir: string): KubeObject[] {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'].map((f) => path.join(dir, f)).find((f) => existsSync(f))
  if (!file) throw new Error(`${dir}: no kustomization.yaml`)
  const k = parse(readFileSync(file, 'utf8')) as Record<string, any>
  for (const key of Object.keys(k)) if (!KNOWN.has(key)) throw new Error(`${file}: the test renderer does not know "${key}"; teach test/deploy/kustomize.ts`)
  if (k.kind !== undefined && k.kind !== 'Kustomization') throw new Error(`${file}: kind ${k.kind}`)

  const objects: KubeObject[] = []
  for (const entry of (k.resources ?? []) as string[]) {
    const at = path.resolve(dir, entry)
    if (statSync(at).isDirectory()) objects.push(...kustomize(at))
    else objects.push(...readManifests(at))
  }
  const renamed = new Map<string, string>()
  for (const generator of (k.configMapGenerator ?? []) as any[]) {
    const configMap = generateConfigMap(generator, dir, file)
    renamed.set(generator.name, configMap.metadata.name)
    objects.push(configMap)
  }
  for (const patch of (k.patches ?? []) as any[]) applyPatch(patch, objects, dir, file)
  for (const entry of (k.labels ?? []) as any[]) addLabels(entry, objects, file)
  if (k.namespace) for (const o of objects) o.metadata.namespace = k.namespace
  for (const o of objects) renameConfigMapReferences(o, renamed)
  return objects
}

export function readManifests(file: string): KubeObject[] {
  const out: KubeObject[] = []
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`)
    const value = doc.toJS() as KubeObject
    if (value) out.push(value)
  }
  return out
}

function generateConfigMap(generator: any, dir: string, file: string): KubeObject {
  for (const key of Object.keys(generator))
    if (!['name', 'files', 'literals'].includes(key)) throw new Error(`${file}: configMapGenerator.${key} is not known to the test renderer`)
  const data: Record<string, string> = {}
  for (const spec of (generator.files ?? []) as string[]) {
    const [key, source] = spec.includes('=') ? (spec.split('=', 2) as [string, string]) : [path.basename(spec), spec]
    data[key] = readFileSync(path.resolve(dir, source), 'utf8')
  }
  for (const literal of (generator.literals ?? []) as string[]) {
    const eq = literal.indexOf('=')
    data[literal.slice(0, eq)] = literal.slice(eq + 1)
  }
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${generator.name}-${configMapHash(generator.name, data)}` }, data }
}

/**
 * kustomize's name suffix (api/hasher): sha256 of the Go JSON encoding of {data, kind, name}
 * (keys sorted, HTML characters escaped as Go does), its first 10 hex digits with 0 1 3 a e
 * replaced so the suffix never reads as a word.
 */
export function configMapHash(name: string, data: Record<string, string>): string {
  const sorted = Object.fromEntries(Object.entries(data).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  const json = JSON.stringify({ data: sorted, kind: 'ConfigMap', name }).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
  const hex = createHash('sha256').update(json).digest('hex').slice(0, 10)
  const swap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' }
  return [...hex].map((c) => swap[c] ?? c).join('')
}

function applyPatch(patch: any, objects: KubeObject[], dir: string, file: string): void {
  const text: string = patch.patch ?? readFileSync(path.resolve(dir, patch.path), 'utf8')
  const ops = parse(text) as unknown
  if (!Array.isArray(ops)) throw new Error(`${file}: only JSON (RFC 6902) patches are known to the test renderer`)
  const target = patch.target ?? {}
  const matches = objects.filter(
    (o) =>
      (!target.kind || o.kind === target.kind) &&
      (!target.name || o.metadata?.name === target.name) &&
      (!target.group || o.apiVersion.split('/')[0] === target.group) &&
      (!target.version || o.apiVersion.split('/').at(-1) === target.version),
  )
  if (!matches.length) throw new Error(`${file}: patch target ${JSON.stringify(target)} matches nothing`)
  for (const o of matches) for (const op of ops) jsonPatch(o, op, file)
}

/** One RFC 6902 operation, in place. */
export function jsonPatch(doc: KubeObject, op: { op: string; path: string; from?: string; value?: unknown }, where = 'patch'): void {
  const fail = (why: string): never => {
    throw new Error(`${where}: ${op.op} ${op.path}: ${why}`)
  }
  const tokens = (pointer: string) =>
    pointer === ''
      ? []
      : pointer
          .slice(1)
          .split('/')
          .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  const locate = (pointer: string): [any, string] => {
    const parts = tokens(pointer)
    let node = doc
    for (const part of parts.slice(0, -1)) {
      node = node?.[Array.isArray(node) ? Number(part) : part]
      if (node === undefined || typeof node !== 'object') fail(`no ${pointer}`)
    }
    return [node, parts.at(-1)!]
  }
  const get = (pointer: string) => {
    const [parent, key] = locate(pointer)
    if (!(key in parent) && !(Array.isArray(parent) && key === '-')) fail(`no ${pointer}`)
    return parent[key]
  }
  const remove = (pointer: string) => {
    const [parent, key] = locate(pointer)
    const value = get(pointer)
    if (Array.isArray(parent)) parent.splice(Number(key), 1)
    else delete parent[key]
    return value
  }
  const add = (pointer: string, value: unknown) => {
    const [parent, key] = locate(pointer)
    if (Array.isArray(parent)) {
      const index = key === '-' ? parent.length : Number(key)
      if (!(index >= 0 && index <= parent.length)) fail(`index ${key} out of range`)
      parent.splice(index, 0, value)
    } else parent[key] = value
  }
  switch (op.op) {
    case 'test':
      if (JSON.stringify(get(op.path)) !== JSON.stringify(op.value)) fail(`is ${JSON.stringify(get(op.path))}, not ${JSON.stringify(op.value)}`)
      break
    case 'add':
      add(op.path, structuredClone(op.value))
      break
    case 'remove':
      remove(op.path)
      break
    case 'replace':
      get(op.path)
      remove(op.path)
      add(op.path, structuredClone(op.value))
      break
    case 'move':
      add(op.path, remove(op.from!))
      break
    case 'copy':
      add(op.path, structuredClone(get(op.from!)))
      break
    default:
      fail('unknown operation')
  }
}

function addLabels(entry: any, objects: KubeObject[], file: string): void {
  if (entry.includeSelectors)
    throw new Error(`${file}: labels with includeSelectors are not known to the test renderer (and would change a Deployment's immutable selector)`)
  for (const o of objects) {
    o.metadata.labels = { ...o.metadata.labels, ...entry.pairs }
    if (entry.includeTemplates && o.spec?.template?.metadata) o.spec.template.metadata.labels = { ...o.spec.template.metadata.labels, ...entry.pairs }
  }
}

/** kustomize's nameReference for ConfigMaps, in the pod template places this kit uses. */
function renameConfigMapReferences(o: KubeObject, renamed: Map<string, string>): void {
  const pod = o.spec?.template?.spec
  if (!pod) return
  const rename = (ref: { name?: string } | undefined) => {
    if (ref?.name && renamed.has(ref.name)) ref.name = renamed.get(ref.name)
  }
  for (const v of pod.volumes ?? []) {
    rename(v.configMap)
    for (const s of v.projected?.sources ?? []) rename(s.configMap)
  }
  for (const c of [...(pod.containers ?? []), ...(pod.initContainers ?? [])]) {
    for (const e of c.env ?? []) rename(e.valueFrom?.configMapKeyRef)
    for (const e of c.envFrom ?? []) rename(e.configMapRef)
  }
}
