// Kubernetes objects checked against the official schemas: kubernetes-models (the Kubernetes
// OpenAPI definitions compiled to validators) and @kubernetes-models/prometheus-operator (the
// operator's CRD schemas). Their schemas leave additionalProperties open, as the OpenAPI
// definitions do, so a misspelt field (`readinesProbe`, `podMetricEndpoints`) would pass; the API
// server drops such a field (or refuses it with --validate=strict) and the manifest silently means
// something else. So the object is validated through a proxy that records which fields the
// validator reads: a field it never read is unknown to the schema. Objects the validator
// enumerates (labels, annotations, ConfigMap data: maps in the schema) may have any keys.
import * as apps from 'kubernetes-models/apps/v1'
import * as networking from 'kubernetes-models/networking.k8s.io/v1'
import * as policy from 'kubernetes-models/policy/v1'
import * as core from 'kubernetes-models/v1'
import * as monitoring from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'

interface ModelClass {
  apiVersion: string
  kind: string
  prototype: { validate(): void }
}

const MODELS: ModelClass[] = [apps, networking, policy, core, monitoring].flatMap((group) =>
  Object.values(group as Record<string, unknown>).filter(
    (v): v is ModelClass =>
      typeof v === 'function' && typeof (v as Partial<ModelClass>).apiVersion === 'string' && typeof (v as Partial<ModelClass>).kind === 'string',
  ),
)

/** Schema problems of one object: the validator's errors, then fields the schema does not have. */
export function schemaProblems(object: { apiVersion?: string; kind?: string }): string[] {
  const model = MODELS.find((m) => m.apiVersion === object.apiVersion && m.kind === object.kind)
  if (!model) return [`no schema for ${object.apiVersion} ${object.kind}`]
  const seen = new Map<object, { read: Set<string>; enumerated: boolean }>()
  const copy = structuredClone(object)
  const proxied = track(copy, seen)
  try {
    // The model's own validate(), run on the proxy instead of a model instance.
    model.prototype.validate.call(proxied)
  } catch (err) {
    return [(err as Error).message]
  }
  return unknownFields(copy, seen, '')
}

function track<T>(value: T, seen: Map<object, { read: Set<string>; enumerated: boolean }>): T {
  if (typeof value !== 'object' || value === null) return value
  const record = { read: new Set<string>(), enumerated: false }
  const proxies = new Map<string, unknown>()
  const proxy = new Proxy(value as object, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver) as unknown
      if (typeof key !== 'string') return v
      record.read.add(key)
      if (typeof v !== 'object' || v === null) return v
      if (!proxies.has(key)) proxies.set(key, track(v, seen))
      return proxies.get(key)
    },
    ownKeys(target) {
      record.enumerated = true
      return Reflect.ownKeys(target)
    },
  })
  seen.set(value as object, record)
  return proxy as T
}

function unknownFields(value: unknown, seen: Map<object, { read: Set<string>; enumerated: boolean }>, at: string): string[] {
  if (typeof value !== 'object' || value === null) return []
  const out: string[] = []
  const record = seen.get(value)
  for (const [key, child] of Object.entries(value)) {
    const here = `${at}/${key}`
    if (!Array.isArray(value) && record && !record.enumerated && !record.read.has(key)) out.push(`${here}: not a field of the schema`)
    out.push(...unknownFields(child, seen, here))
  }
  return out
}
