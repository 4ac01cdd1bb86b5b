// `workers: 2` with `listen.reuse_port` (the default): each worker opens a socket of its own on
// the proxy port (SO_REUSEPORT) and the kernel spreads connections over them; with
// `reuse_port: false` the primary holds the one socket and hands connections round-robin.
// Counted in the kernel's own table of listening sockets (/proc/net/tcp), and by which worker
// wrote each request's access line.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { MAIN, running } from '../support/cli.js'
import { eventually, tempFile, upstream, fresh } from '../support/harness.js'

/** Sockets in LISTEN state (0A) on 127.0.0.1:port, from the kernel's table. */
function listeningSockets(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .filter((line) => {
      const fields = line.trim().split(/\s+/)
      return fields[1] === local && fields[3] === '0A'
    }).length
}

const up = await upstream(t)

for (const reusePort of [true, false]) {
  t.test(`reuse_port: ${reusePort}`, async (t) => {
    const setting = reusePort ? '' : ', reuse_port: false'
    const file = tempFile(
      'policy.yaml',
      `version: 1\nworkers: 2\nlisten: { host: 127.0.0.1, port: 0${setting} }\nadmin: { host: 127.0.0.1, port: 0 }\nupstreams: { a: { url: "${up.url}" } }\nroutes:\n  - { path: /x, upstream: a, auth: none }\n`,
    )
    const { out } = running(t, [MAIN, 'serve', '-c', file])
    await eventually(
      () => `the cluster starts: ${out()}`,
      40_000,
      // Each process writes its lines in batches: the workers' may come after the primary's.
      () => /"all workers listening"/.test(out()) && /jwtgate listening on/.test(out()),
    )
    const url = /jwtgate listening on (\S+?)"/.exec(out())![1]!
    const port = Number(new URL(url).port)

    t.equal(listeningSockets(port), reusePort ? 2 : 1, reusePort ? 'one listening socket per worker' : "one listening socket, the primary's")
    const statuses: number[] = []
    for (let i = 0; i < 40; i++) statuses.push((await fresh(`${url}/x`)).status)
    t.same(statuses, Array(40).fill(200))
    const workers = () =>
      new Set(
        out()
          .split('\n')
          .filter((l) => l.includes('"msg":"request"'))
          .map((l) => (JSON.parse(l) as { worker: number }).worker),
      )
    // Each worker writes its access lines in batches, within 100 ms. The kernel's hash of 40
    // connections' source ports leaves one worker idle once in 2^39.
    await eventually(
      () => `both workers answered: ${[...workers()]}`,
      5000,
      async () => workers().size === 2,
    )
  })
}
