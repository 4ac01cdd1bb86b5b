// deploy/kubernetes/ as `kubectl kustomize` renders each overlay (./kustomize.ts): every object
// valid against the official schemas with no unknown field (./k8s_schema.ts), and agreeing with
// itself, with the image and with the gateway: ports, probe paths, mount paths, the runtime user,
// NODE_OPTIONS, the grace period, the NetworkPolicy and PodDisruptionBudget, the monitoring kit,
// and a policy that loads. Nothing a plain apply picks up may hold a Secret.
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { parseAllDocuments } from 'yaml'
import { buildAdmin, type AdminView } from '../../src/admin/server.js'
import { METRIC_NAMES, Metrics } from '../../src/admin/metrics.js'
import { RouteWindows } from '../../src/admin/route_figures.js'
import { createLogger } from '../../src/log.js'
import { loadPolicy } from '../../src/server.js'
import { validationProblems as problems } from '../support/cli.js'
import { tempFile } from '../support/harness.js'
import { env, execForm, parseDockerfile, ROOT, runtimeUser } from './dockerfile.js'
import { schemaProblems } from './k8s_schema.js'
import { configMapHash, jsonPatch, type KubeObject as Obj, kustomize, readManifests } from './kustomize.js'
import { groupingLabels, metricNames, selectors } from './promql.js'

const DEPLOY = path.join(ROOT, 'deploy')
const KIT = path.join(DEPLOY, 'kubernetes')
const OVERLAYS = ['sidecar', 'native-sidecar'] as const
const stages = parseDockerfile()
const image = stages.at(-1)!
const silent = createLogger('silent')

t.test('the test renderer does what kustomize does', async (t) => {
  // kustomize's own test vector (api/hasher/hasher_test.go, "one key").
  t.equal(configMapHash('', { one: '' }), '9g67k2htb6')
  const doc = { a: [{ name: 'x' }, { name: 'y' }] }
  t.throws(() => jsonPatch(doc, { op: 'test', path: '/a/1/name', value: 'x' }), /is "y", not "x"/, 'a failed test op stops the render')
  jsonPatch(doc, { op: 'add', path: '/b', value: [] })
  jsonPatch(doc, { op: 'move', from: '/a/1', path: '/b/-' })
  t.same(doc, { a: [{ name: 'x' }], b: [{ name: 'y' }] })
  const dir = path.dirname(tempFile('kustomization.yaml', 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nsecretGenerator: []\n'))
  t.throws(() => kustomize(dir), /does not know "secretGenerator"/, 'a field it does not know is an error, not skipped')
})

/** Every directory under deploy/ that `kubectl apply -k` could be pointed at. */
function kustomizations(dir = DEPLOY): string[] {
  const here = readdirSync(dir).includes('kustomization.yaml') ? [dir] : []
  return [
    ...here,
    ...readdirSync(dir)
      .map((f) => path.join(dir, f))
      .filter((f) => statSync(f).isDirectory())
      .flatMap((d) => kustomizations(d)),
  ]
}

/** Every file `kubectl apply -R -f deploy/` would send (kustomization files aside), as objects. */
function plainManifests(dir = DEPLOY): Array<{ file: string; object: Obj }> {
  return readdirSync(dir).flatMap((f) => {
    const file = path.join(dir, f)
    if (statSync(file).isDirectory()) return plainManifests(file)
    if (!/\.(ya?ml|json)$/.test(f) || f === 'kustomization.yaml') return []
    const objects = f.endsWith('.json') ? [JSON.parse(readFileSync(file, 'utf8')) as Obj] : readManifests(file)
    return objects.filter((o) => o?.apiVersion && o?.kind).map((object) => ({ file: path.relative(ROOT, file), object }))
  })
}

t.test('no Secret in anything an apply picks up: the real one is never overwritten', async (t) => {
  const dirs = kustomizations()
  t.ok(dirs.length >= 4, `kustomizations: ${dirs.map((d) => path.relative(ROOT, d)).join(', ')}`)
  for (const dir of dirs) {
    for (const o of kustomize(dir)) t.not(o.kind, 'Secret', `${path.relative(ROOT, dir)}: renders ${o.kind} ${o.metadata.name}`)
  }
  const plain = plainManifests()
  t.ok(plain.length > 0, 'plain manifest files are looked at too')
  for (const { file, object } of plain) t.not(object.kind, 'Secret', `${file}: ${object.kind} ${object.metadata?.name}`)
  for (const { file } of plain) t.notMatch(readFileSync(path.join(ROOT, file), 'utf8'), /CHANGE-?ME/i, `${file}: no placeholder secret value`)
})

t.test("the README's deploy steps: apply -k an overlay, create the Secret only if missing", async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = /\n## Deploy on Kubernetes\n([\s\S]*?)(?:\n## |$(?![\s\S]))/.exec(readme)?.[1] ?? ''
  t.ok(section, 'README has a "Deploy on Kubernetes" section')
  const applies = [...section.matchAll(/kubectl apply ([^\n`]*)/g)].map((m) => m[1]!)
  t.ok(applies.length >= 2, 'it applies an overlay and the monitoring kit')
  for (const args of applies) {
    const m = /^-k (deploy\/kubernetes\/\S+)/.exec(args)
    t.ok(m, `kubectl apply ${args}: with -k (a kustomization), never -f on deploy/`)
    if (m) t.ok(readdirSync(path.join(ROOT, m[1]!)).includes('kustomization.yaml'), `${m[1]} is a kustomization`)
  }
  t.notMatch(section, /kubectl apply -f/, 'no apply -f')
  t.notMatch(section, /create secret[^\n]*--dry-run[^\n]*\|\s*kubectl apply/, 'no create --dry-run | apply, which overwrites a Secret')
  t.match(
    section,
    /kubectl get secret orders-jwtgate[^\n]*\|\|[^\n]*kubectl create secret generic orders-jwtgate/,
    'the Secret is created only when it is not there',
  )
})

for (const overlay of OVERLAYS) {
  t.test(`overlays/${overlay}`, async (t) => {
    const objects = kustomize(path.join(KIT, 'overlays', overlay))
    const one = (kind: string): Obj => {
      const found = objects.filter((o) => o.kind === kind)
      if (found.length !== 1) throw new Error(`expected one ${kind} in overlays/${overlay}, found ${found.length}`)
      return found[0]
    }
    const deployment = one('Deployment')
    const service = one('Service')
    const configMap = one('ConfigMap')
    const pod = deployment.spec.template.spec
    const native = overlay === 'native-sidecar'
    const gate = (native ? pod.initContainers : pod.containers)?.find((c: Obj) => c.name === 'jwtgate')
    const app = pod.containers.find((c: Obj) => c.name !== 'jwtgate')

    t.test('every object is valid against the Kubernetes schema, with no unknown field', async (t) => {
      for (const o of objects) t.same(schemaProblems(o), [], `${o.kind} ${o.metadata.name}`)
    })

    t.test(native ? 'jwtgate is a native sidecar: an init container restarted Always' : 'jwtgate is a second container', async (t) => {
      t.ok(gate, 'the jwtgate container is there')
      t.equal(pod.containers.length, native ? 1 : 2)
      if (native) t.equal(gate.restartPolicy, 'Always', 'restartPolicy: Always (Kubernetes >= 1.29)')
      else t.notOk(pod.initContainers, 'no init containers')
    })

    // What the container runs: its command/args, or the image's ENTRYPOINT/CMD.
    const args: string[] = gate.command ? (gate.args ?? []) : (gate.args ?? execForm(image, 'CMD'))
    const policyPath = args[args.indexOf('-c') + 1]!

    /** The file a container sees at `file`, as [volume, key]: a whole-directory mount of a ConfigMap or Secret. */
    const mounted = (container: Obj, file: string): { volume: Obj; key: string } => {
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
    const portNumber = (container: Obj, port: number | string): number =>
      typeof port === 'number' ? port : container.ports.find((p: Obj) => p.name === port)?.containerPort

    const policyText: string = configMap.data[mounted(gate, policyPath).key]
    const policyDoc = parseAllDocuments(policyText)[0]!.toJS() as Obj
    const secretFiles = Object.entries(policyDoc.issuers ?? {}).flatMap(([name, i]: [string, Obj]) =>
      i.secret_file ? [{ name, file: i.secret_file as string }] : [],
    )
    const policyWithSecret = (value: string): string => {
      let text = policyText
      for (const { file } of secretFiles) text = text.split(file).join(tempFile('secret', value))
      return tempFile('policy.yaml', text)
    }
    const policy = loadPolicy(policyWithSecret('k'.repeat(48)), silent)
    for (const issuer of policy.issuers.values()) issuer.stop()

    t.test('the policy in the ConfigMap validates (with a real secret in place of the mounted one)', async (t) => {
      t.same(problems(policyWithSecret('k'.repeat(48))), [])
      t.ok(secretFiles.length > 0, 'an issuer reads its secret from a file')
      t.ok(
        Object.values(policyDoc.issuers).some((i: Obj) => i.jwks_uri),
        'and one uses a JWKS',
      )
      t.match(problems(policyWithSecret('short')).join('\n'), /the secret must be at least \d+ bytes/, 'a wrong secret still fails closed')
    })

    t.test('the policy file and secret files are where the container reads them', async (t) => {
      t.equal(policyPath, '/etc/jwtgate/policy.yaml', 'the image CMD reads /etc/jwtgate/policy.yaml')
      const p = mounted(gate, policyPath)
      t.equal(p.volume.configMap?.name, configMap.metadata.name, 'from the generated ConfigMap (its hashed name)')
      t.match(configMap.metadata.name, /^orders-jwtgate-[a-z0-9]{10}$/, 'named by content: a policy change rolls the pods')
      t.ok(p.key in configMap.data, `the ConfigMap has the key ${p.key}`)
      for (const { name, file } of secretFiles) {
        t.ok(path.posix.isAbsolute(file), `issuer ${name}: secret_file is absolute`)
        const s = mounted(gate, file)
        t.equal(s.volume.secret?.secretName, 'orders-jwtgate', `issuer ${name}: ${file} comes from the Secret orders-jwtgate, created out of band`)
        t.equal(s.key, 'internal-jwt-secret', 'the key the README creates')
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

      const metrics = new Metrics()
      const admin = buildAdmin({ policy: () => policy, loadedAt: () => new Date(), shuttingDown: () => false } as AdminView, metrics, silent, {
        policy: () => policy,
        metrics,
        windows: new RouteWindows(() => metrics.routeTotals()),
        pools: () => [],
        checks: () => [],
        startedAt: Date.now(),
      })
      await admin.ready()
      t.teardown(() => admin.close())
      for (const [probe, route] of [
        ['startupProbe', '/healthz'],
        ['livenessProbe', '/healthz'],
        ['readinessProbe', '/readyz'],
      ] as const) {
        const get = gate[probe]?.httpGet
        t.ok(get, `${probe} is an httpGet`)
        t.equal(get.path, route, `${probe} GET ${route}`)
        t.equal(portNumber(gate, get.port), policy.admin!.port, `${probe} on the admin port`)
        t.ok(admin.hasRoute({ method: 'GET', url: get.path }), `the admin listener serves GET ${get.path}`)
      }
      const scrape = deployment.spec.template.metadata.annotations ?? {}
      t.equal(scrape['prometheus.io/scrape'], 'true', 'the pods are annotated for Prometheus to scrape')
      t.equal(Number(scrape['prometheus.io/port']), policy.admin!.port, 'Prometheus scrapes the admin port')
      t.ok(admin.hasRoute({ method: 'GET', url: scrape['prometheus.io/path'] }), 'the scrape path exists')
    })

    t.test('readiness includes the app: its upstream has a health check, since the kubelet cannot probe 127.0.0.1', async (t) => {
      for (const [name, u] of policy.upstreams) {
        t.equal(new URL(u.origin).hostname, '127.0.0.1', `upstream ${name}: the app is reached over loopback inside the pod`)
        t.ok(u.health, `upstream ${name}: health: is set, so /readyz waits for the app`)
      }
      t.notOk(app.readinessProbe || app.livenessProbe || app.startupProbe, 'the app has no probe the kubelet could not reach')
      t.ok(gate.startupProbe.failureThreshold * (gate.startupProbe.periodSeconds ?? 10) >= 10, 'the process gets time to start')
    })

    t.test('the Service sends traffic to the gateway, never to the app or admin port', async (t) => {
      for (const [k, v] of Object.entries(service.spec.selector)) t.equal(deployment.spec.template.metadata.labels[k], v, `selector ${k}=${v} matches the pods`)
      t.ok(service.spec.ports.length > 0)
      for (const port of service.spec.ports) t.equal(portNumber(gate, port.targetPort), policy.listen.port, `Service port ${port.port} targets the gateway`)
    })

    t.test('a re-apply over a running Deployment: same selector, one pod at a time, never fewer Ready', async (t) => {
      // A Deployment's selector is immutable: any change makes `kubectl apply` fail on a running one.
      t.same(deployment.spec.selector, { matchLabels: { app: 'orders' } }, 'the selector of every earlier version of this kit')
      t.equal(deployment.spec.strategy?.rollingUpdate?.maxUnavailable, 0, 'maxUnavailable: 0: a bad policy stops the rollout with the old pods serving')
      const pdb = one('PodDisruptionBudget')
      t.same(pdb.spec.selector, deployment.spec.selector, 'the PodDisruptionBudget covers these pods')
      t.ok(
        pdb.spec.maxUnavailable !== undefined ? pdb.spec.maxUnavailable < deployment.spec.replicas : pdb.spec.minAvailable < deployment.spec.replicas,
        'and lets a drain go on',
      )
    })

    t.test('the NetworkPolicy: the gateway port open, the admin port only to the monitoring namespace', async (t) => {
      const np = one('NetworkPolicy')
      for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels)) t.equal(deployment.spec.template.metadata.labels[k], v, `podSelector ${k}=${v}`)
      t.same(np.spec.policyTypes, ['Ingress'], 'ingress only: egress to the IdP (and Redis) stays open')
      const portOf = (p: Obj) => portNumber(gate, p.port)
      const rules = np.spec.ingress as Obj[]
      const open = rules.filter((r) => !r.from)
      t.same(
        open.flatMap((r) => r.ports.map(portOf)),
        [policy.listen.port],
        'only the gateway port is open to all',
      )
      const adminRules = rules.filter((r) => r.ports.some((p: Obj) => portOf(p) === policy.admin!.port))
      t.equal(adminRules.length, 1)
      t.same(
        adminRules[0].from,
        [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
        'admin: from the monitoring namespace',
      )
      for (const r of rules) for (const p of r.ports) t.not(portOf(p), 3000, 'the app port is never opened')
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
      const appStopMs = (app.lifecycle?.preStop?.sleep?.seconds ?? 0) * 1000
      // Classic: both get SIGTERM at once, and the app's preStop keeps it up through the drain.
      // Native: the sidecar gets SIGTERM only once the app has exited.
      if (!native) t.ok(appStopMs >= drainDelayMs, `the app's preStop (${appStopMs / 1000}s) outlasts the drain delay`)
      const needMs = (native ? appStopMs : 0) + drainDelayMs + timeoutMs + 5000
      t.ok(pod.terminationGracePeriodSeconds * 1000 >= needMs, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} >= ${needMs / 1000}s`)
    })

    t.test("NODE_OPTIONS keeps the image's flags, and the heap cap fits the memory limit", async (t) => {
      const imageOptions = env(image).NODE_OPTIONS
      t.ok(imageOptions, 'the image sets NODE_OPTIONS')
      const own = gate.env?.find((e: Obj) => e.name === 'NODE_OPTIONS')?.value as string | undefined
      // A container env entry replaces the image's value; it cannot append to it.
      if (own !== undefined)
        for (const flag of imageOptions!.split(/\s+/)) t.ok(own.split(/\s+/).includes(flag), `the Deployment's NODE_OPTIONS repeats ${flag}`)
      const limit = mebibytes(gate.resources?.limits?.memory)
      const heap = /--max-old-space-size=(\d+)/.exec(own ?? '')
      t.ok(limit, 'a memory limit')
      if (heap) t.ok(Number(heap[1]) <= limit! / 2, `the V8 heap cap (${heap[1]} MB) leaves room under the ${limit} MiB limit`)
    })
  })
}

t.test('monitoring: a PodMonitor on the admin port, and alerts on metrics jwtgate exports', async (t) => {
  const objects = kustomize(path.join(KIT, 'monitoring'))
  for (const o of objects) t.same(schemaProblems(o), [], `${o.kind} ${o.metadata.name}: valid, no unknown field`)
  const deployment = kustomize(path.join(KIT, 'overlays/sidecar')).find((o) => o.kind === 'Deployment')
  const gate = deployment.spec.template.spec.containers.find((c: Obj) => c.name === 'jwtgate')
  const podMonitor = objects.find((o) => o.kind === 'PodMonitor')
  for (const [k, v] of Object.entries(podMonitor.spec.selector.matchLabels))
    t.equal(deployment.spec.template.metadata.labels[k], v, `PodMonitor selects ${k}=${v}`)
  for (const e of podMonitor.spec.podMetricsEndpoints) {
    t.equal(gate.ports.find((p: Obj) => p.name === e.port)?.containerPort, 9901, `endpoint port ${e.port} is the admin port`)
    t.equal(e.path, '/metrics')
  }

  const rule = objects.find((o) => o.kind === 'PrometheusRule')
  const alerts = rule.spec.groups.flatMap((g: Obj) => g.rules) as Obj[]
  for (const name of [
    'JwtgateJwksStale',
    'JwtgatePolicyReloadFailing',
    'JwtgateHighErrorRate',
    'JwtgateHighDenyRatio',
    'JwtgateRevocationBackendDown',
    'JwtgateUpstreamUnhealthy',
  ]) {
    t.ok(
      alerts.some((a) => a.alert === name),
      `alert ${name}`,
    )
  }
  // The series labels of each metric, from the registry itself; Prometheus adds the target's.
  const registry = new Metrics().registry
  const target = new Set(['namespace', 'pod', 'job', 'instance', 'container'])
  const known = new Set<string>(METRIC_NAMES)
  for (const a of alerts) {
    t.ok(a.for && a.labels?.severity && a.annotations?.summary, `${a.alert}: has for, severity and summary`)
    const names = metricNames(a.expr)
    t.ok(names.length, `${a.alert}: reads a metric`)
    for (const name of names) {
      t.ok(known.has(name), `${a.alert}: ${name} is in src/admin/metrics.ts`)
      const metric = registry.getSingleMetric(name) as unknown as { labelNames?: string[] } | undefined
      if (!metric) continue
      const labels = new Set([...(metric.labelNames ?? []), ...target])
      for (const s of selectors(a.expr).filter((x) => x.metric === name)) {
        for (const label of Object.keys(s.matchers)) t.ok(labels.has(label), `${a.alert}: ${name} has the label ${label}`)
      }
      for (const label of groupingLabels(a.expr)) {
        if (names.every((n) => registry.getSingleMetric(n)))
          t.ok(
            names.some((n) => new Set([...((registry.getSingleMetric(n) as unknown as { labelNames?: string[] }).labelNames ?? []), ...target]).has(label)),
            `${a.alert}: groups by ${label}, a label of its metrics`,
          )
      }
    }
  }
})

function mebibytes(q: string | undefined): number | undefined {
  const m = q ? /^(\d+)(Mi|Gi)$/.exec(q) : null
  return m ? Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1) : undefined
}
