// A real redis-server for the tests, on a free loopback port, without persistence (unless a
// test hands it a data directory to load from). Where redis-server is not installed the tests
// that need it are skipped with the reason, except under CI (CI=true), where that is a failure.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Redis } from 'ioredis'

interface Tap {
  test(name: string, fn: (t: any) => Promise<void>): unknown
  test(name: string, options: { skip?: string | boolean }, fn: (t: any) => Promise<void>): unknown
  teardown(fn: () => unknown): void
}

const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
/** Why Redis tests cannot run here, or undefined when they can. */
export const redisMissing: string | undefined =
  found.error || found.status !== 0 ? 'redis-server is not installed (apt-get install redis-server); .ci/run installs it' : undefined

/** t.test that needs redis-server: skipped with the reason when it is absent, failed under CI. */
export function redisTest(t: Tap, name: string, fn: (t: any) => Promise<void>): void {
  if (redisMissing && process.env.CI === 'true') {
    t.test(name, async (t) => {
      t.fail(`CI=true and ${redisMissing}`)
    })
    return
  }
  t.test(name, { skip: redisMissing ?? false }, fn)
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

export interface RedisServer {
  port: number
  url: string
  /** A new client, closed at teardown. */
  client(): Redis
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>
  /** SIGSTOP / SIGCONT: connections stay open but nothing answers (a network partition). */
  pause(): void
  resume(): void
  /** Starts it again on the same port; with `dir`, loading `dir/dump.rdb`. */
  start(options?: { dir?: string }): Promise<void>
}

export async function startRedis(t: Tap, options: { port?: number; dir?: string } = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort())
  let child: ChildProcess | undefined
  const clients: Redis[] = []
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    client() {
      const c = new Redis(server.url, { lazyConnect: false, maxRetriesPerRequest: 1 })
      c.on('error', () => {})
      clients.push(c)
      return c
    },
    async kill() {
      const c = child
      child = undefined
      if (!c || c.exitCode !== null) return
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve())
        c.kill('SIGKILL')
      })
    },
    pause() {
      child?.kill('SIGSTOP')
    },
    resume() {
      child?.kill('SIGCONT')
    },
    async start(opts = {}) {
      const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'jwtgate-redis-'))
      child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', 'dump.rdb', '--loglevel', 'warning'],
        { stdio: 'ignore' },
      )
      await waitForPing(port)
    },
  }
  t.teardown(async () => {
    for (const c of clients) c.disconnect()
    await server.kill()
  })
  await server.start({ dir: options.dir })
  return server
}

/** Writes keys into a fresh dump.rdb (through a throwaway redis-server) and returns its directory. */
export async function rdbWith(t: Tap, write: (client: Redis) => Promise<unknown>): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'jwtgate-rdb-'))
  const scratch = await startRedis(t, { dir })
  const client = scratch.client()
  await write(client)
  await client.save()
  await scratch.kill()
  return dir
}

async function waitForPing(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await ping(port)) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`redis-server on port ${port} did not answer within 5 s`)
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.setTimeout(500, () => {
      socket.destroy()
      resolve(false)
    })
    socket.on('error', () => resolve(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (d) => {
      socket.destroy()
      resolve(d.toString().startsWith('+PONG'))
    })
  })
}
