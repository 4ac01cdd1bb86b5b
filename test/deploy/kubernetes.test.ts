// deploy/kubernetes/ must agree with itself, with the image and with the gateway: ports, probe
// paths, mount paths, the runtime user, the grace period, and a policy that loads.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { parseAllDocuments } from 'yaml'
import { buildAdmin, type AdminView } from '../../src/admin/server.js'
import { Metrics } from '../../src/admin/metrics.js'
import { createLogger } from '../../src/log.js'
import { loadPolicy } from '../../src/server.js'
import { validationProblems as problems } from '../support/cli.js'
import { tempFile } from '../support/harness.js'
import { execForm, parseDockerfile, ROOT, runtimeUser } from './dockerfile.js'

const DIR = path.join(ROOT, 'deploy/kubernetes')

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = any

const objects: Obj[] = []
for (const file of readdirSync(DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort()) {
  for (const doc of parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'))) {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`)
    const value = doc.toJS() as Obj
    if (value) objects.push(Object.assign(value, { file }))
  }
}
const one = (kind: string): Obj => {
  const found = objects.filter((o) => o.kind === kind)
  if (found.length !== 1) throw new Error(`expected one ${kind} in deploy/kubernetes, found ${found.length}`)
  return found[0]
}
const deployment = one('Deployment')
const service = one('Service')
const configMap = one('ConfigMap')
const secret = one('Secret')
const pod = deployment.spec.template.spec
const gate = pod.containers.find((c: Obj) => c.name === 'jwtgate')
const stages = parseDockerfile()
const image = stages.at(-1)!

// What the container runs: its command/args, or the image's ENTRYPOINT/CMD.
const args: string[] = gate.command ? (gate.args ?? []) : (gate.args ?? execForm(image, 'CMD'))
const policyPath = args[args.indexOf('-c') + 1]!

/** The file a container sees at `file`, as [volume, key]: a whole-directory mount of a ConfigMap or Secret. */
function mounted(container: Obj, file: string): { volume: Obj; key: string } {
  const mount = container.volumeMounts?.find((m: Obj) => m.mountPath.replace(/\/$/, '') === path.posix.dirname(file))
  if (!mount) throw new Error(`nothing is mounted at ${path.posix.dirname(file)} in container ${container.name}`)
  if (mount.subPath) throw new Error(`${mount.mountPath} uses subPath: updates would never reach the file`)
  const volume = pod.volumes.find((v: Obj) => v.name === mount.name)
  const source = volume.configMap ?? volume.secret
  const name = path.posix.basename(file)
  const key = source.items ? source.items.find((i: Obj) => i.path === name)?.key : name
  if (!key) throw new Error(`volume ${volume.name} does not put any key at ${name}`)
  return { volume, key }
}

/** A Service/probe port, by number or by the container's port name. */
function portNumber(container: Obj, port: number | string): number {
  return typeof port === 'number' ? port : container.ports.find((p: Obj) => p.name === port)?.containerPort
}

const policyText: string = configMap.data[mounted(gate, policyPath).key]
const policyDoc = parseAllDocuments(policyText)[0]!.toJS() as Obj
const secretFiles = Object.entries(policyDoc.issuers ?? {}).flatMap(([name, i]: [string, Obj]) =>
  i.secret_file ? [{ name, file: i.secret_file as string }] : [],
)

/** The ConfigMap's policy with each secret_file pointing at a temp file holding `value`. */
function policyWithSecret(value: string): string {
  let text = policyText
  for (const { file } of secretFiles) text = text.split(file).join(tempFile('secret', value))
  return tempFile('policy.yaml', text)
}

// The compiled policy: listen, admin and shutdown with their defaults applied.
const silent = createLogger('silent')
const policy = loadPolicy(policyWithSecret('k'.repeat(48)), silent)
for (const issuer of policy.issuers.values()) issuer.stop()

t.test('the policy in the ConfigMap validates (with a real secret in place of the mounted one)', async (t) => {
  t.same(problems(policyWithSecret('k'.repeat(48))), [])
  t.ok(secretFiles.length > 0, 'an issuer reads its secret from a file')
  t.ok(
    Object.values(policyDoc.issuers).some((i: Obj) => i.jwks_uri),
    'and one uses a JWKS',
  )
})

t.test('the placeholder Secret is refused, so an unedited deploy fails closed', async (t) => {
  for (const { file } of secretFiles) {
    const { key } = mounted(gate, file)
    const placeholder = secret.stringData?.[key] ?? Buffer.from(secret.data?.[key] ?? '', 'base64').toString()
    const refused = problems(policyWithSecret(placeholder))
    t.ok(refused.length > 0, `placeholder ${JSON.stringify(placeholder)} is not a usable secret`)
    t.match(refused.join('\n'), /the secret must be at least \d+ bytes/)
  }
})

t.test('the policy file and secret files are where the container reads them', async (t) => {
  t.equal(policyPath, '/etc/jwtgate/policy.yaml', 'the image CMD reads /etc/jwtgate/policy.yaml')
  const p = mounted(gate, policyPath)
  t.equal(p.volume.configMap?.name, configMap.metadata.name, 'from the ConfigMap')
  t.ok(p.key in configMap.data, `the ConfigMap has the key ${p.key}`)
  for (const { name, file } of secretFiles) {
    t.ok(path.posix.isAbsolute(file), `issuer ${name}: secret_file is absolute`)
    const s = mounted(gate, file)
    t.equal(s.volume.secret?.secretName, secret.metadata.name, `issuer ${name}: ${file} comes from the Secret`)
    t.ok(s.key in (secret.stringData ?? secret.data ?? {}), `the Secret has the key ${s.key}`)
  }
})

t.test('ports and probes match the policy listeners and the admin routes', async (t) => {
  const ports = gate.ports.map((p: Obj) => p.containerPort)
  t.ok(ports.includes(policy.listen.port), `containerPort ${policy.listen.port} (listen)`)
  t.ok(policy.admin, 'the admin listener is on')
  t.ok(ports.includes(policy.admin!.port), `containerPort ${policy.admin!.port} (admin)`)
  t.notOk(['127.0.0.1', 'localhost', '::1'].includes(policy.admin!.host), 'admin is not loopback-only: kubelet probes the pod IP')
  t.notOk(['127.0.0.1', 'localhost', '::1'].includes(policy.listen.host), 'listen is not loopback-only')
  const exposed = image.instructions
    .filter((i) => i.op === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .map((p) => Number(p.replace(/\/tcp$/, '')))
  t.same([...ports].sort(), [...exposed].sort(), 'the container ports are the image EXPOSE ports')

  const admin = buildAdmin({ policy: () => policy, loadedAt: () => new Date(), shuttingDown: () => false } as AdminView, new Metrics(), silent)
  await admin.ready()
  t.teardown(() => admin.close())
  for (const [probe, route] of [
    ['livenessProbe', '/healthz'],
    ['readinessProbe', '/readyz'],
  ] as const) {
    const get = gate[probe]?.httpGet
    t.ok(get, `${probe} is an httpGet`)
    t.equal(get.path, route, `${probe} GET ${route}`)
    t.equal(portNumber(gate, get.port), policy.admin!.port, `${probe} on the admin port`)
    t.ok(admin.hasRoute({ method: 'GET', url: get.path }), `the admin listener serves GET ${get.path}`)
  }
  // The dashboards in deploy/grafana need the metrics scraped: the annotations must be there.
  const scrape = deployment.spec.template.metadata.annotations ?? {}
  t.equal(scrape['prometheus.io/scrape'], 'true', 'the pods are annotated for Prometheus to scrape')
  t.equal(Number(scrape['prometheus.io/port']), policy.admin!.port, 'Prometheus scrapes the admin port')
  t.equal(typeof scrape['prometheus.io/path'], 'string', 'the scrape path is given')
  t.ok(admin.hasRoute({ method: 'GET', url: scrape['prometheus.io/path'] }), 'the scrape path exists')
})

t.test('the Service sends traffic to the gateway, never to the app or admin port', async (t) => {
  for (const [k, v] of Object.entries(service.spec.selector)) t.equal(deployment.spec.template.metadata.labels[k], v, `selector ${k}=${v} matches the pods`)
  t.ok(service.spec.ports.length > 0)
  for (const port of service.spec.ports) t.equal(portNumber(gate, port.targetPort), policy.listen.port, `Service port ${port.port} targets the gateway`)
  for (const [name, u] of Object.entries(policyDoc.upstreams) as Array<[string, Obj]>) {
    t.equal(new URL(u.url).hostname, '127.0.0.1', `upstream ${name}: the app is reached over loopback inside the pod`)
  }
})

t.test('the container runs as the image user, locked down, and is given time to drain', async (t) => {
  const sc = gate.securityContext
  t.equal(sc.runAsUser, runtimeUser(stages)!.uid, 'runAsUser is the Dockerfile USER')
  if (sc.runAsGroup !== undefined) t.equal(sc.runAsGroup, runtimeUser(stages)!.gid)
  t.equal(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, true)
  t.equal(sc.readOnlyRootFilesystem, true)
  t.equal(sc.allowPrivilegeEscalation, false)
  t.ok(sc.capabilities?.drop?.includes('ALL'), 'drops all capabilities')
  const tmp = gate.volumeMounts.find((m: Obj) => m.mountPath === '/tmp')
  t.ok(tmp && pod.volumes.find((v: Obj) => v.name === tmp.name)?.emptyDir, 'an emptyDir at /tmp')

  const { drainDelayMs, timeoutMs } = policy.shutdown
  t.ok(
    pod.terminationGracePeriodSeconds * 1000 >= drainDelayMs + timeoutMs + 5000,
    `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} >= drain_delay ${drainDelayMs / 1000}s + timeout ${timeoutMs / 1000}s + 5s`,
  )

  const limit = mebibytes(gate.resources?.limits?.memory)
  const heap = /--max-old-space-size=(\d+)/.exec(gate.env?.find((e: Obj) => e.name === 'NODE_OPTIONS')?.value ?? '')
  t.ok(limit, 'a memory limit')
  if (heap) t.ok(Number(heap[1]) <= limit! / 2, `the V8 heap cap (${heap[1]} MB) leaves room under the ${limit} MiB limit`)
})

function mebibytes(q: string | undefined): number | undefined {
  const m = q ? /^(\d+)(Mi|Gi)$/.exec(q) : null
  return m ? Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1) : undefined
}
