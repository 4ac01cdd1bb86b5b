// `workers: 2` with HTTP/2 listeners: gRPC calls (grpc-js) over h2c, with the workers' own
// sockets (reuse_port, the default) and with the primary handing connections round, and over h2
// (TLS, ALPN), are answered by both workers, and SIGTERM with a connection open ends the cluster. Each call is on a connection of its own (a local
// subchannel pool: grpc-js otherwise shares one connection among its clients), and the worker
// that answered it is read from its access line.
import t from 'tap'
import { MAIN, running } from '../support/cli.js'
import { testPki } from '../support/certs.js'
import { echoClient, grpc, say, startGrpcUpstream, withToken } from '../support/grpc.js'
import { eventually, tempFile } from '../support/harness.js'

const CALLS = 30

const up = await startGrpcUpstream(t)
const pki = testPki()
const leaf = pki.issue('gateway')

const cases = [
  { name: 'h2c, reuse_port: true', listen: 'protocols: [h2c]', tls: false },
  { name: 'h2c and http1 on one port, reuse_port: false', listen: 'protocols: [http1, h2c], reuse_port: false', tls: false },
  { name: 'h2 (TLS, ALPN)', listen: `protocols: [http1, h2], tls: { cert_file: "${leaf.certFile}", key_file: "${leaf.keyFile}" }`, tls: true },
]

for (const c of cases) {
  t.test(`workers: 2 with ${c.name}: gRPC calls are answered by both workers`, async (t) => {
    const file = tempFile(
      'policy.yaml',
      `version: 1
workers: 2
listen: { host: 127.0.0.1, port: 0, ${c.listen} }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drain_delay: 0s, timeout: 10s }
upstreams: { echo: { url: "${up.url}", protocol: h2c } }
routes:
  - { path: /demo.Echo/*, upstream: echo, grpc: true, auth: none }
`,
    )
    const { proc, out } = running(t, [MAIN, 'serve', '-c', file])
    const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve))
    await eventually(
      () => `the cluster starts: ${out()}`,
      40_000,
      // Each process writes its lines in batches: the workers' may come after the primary's.
      () => /"all workers listening"/.test(out()) && /jwtgate listening on/.test(out()),
    )
    const port = new URL(/jwtgate listening on (\S+?)"/.exec(out())![1]!).port
    const credentials = c.tls ? grpc.credentials.createSsl(pki.ca.cert) : grpc.credentials.createInsecure()
    const texts: string[] = []
    for (let i = 0; i < CALLS; i++) {
      // A connection of its own: grpc-js shares subchannels among its clients unless told not to.
      const client = echoClient(t, `${c.tls ? 'localhost' : '127.0.0.1'}:${port}`, { 'grpc.use_local_subchannel_pool': 1 }, credentials)
      const { err, res } = await say(client, { text: `call ${i}` }, withToken(undefined))
      t.error(err, `call ${i}`)
      texts.push(res?.text ?? '')
      // The last client keeps its connection open, idle, for the shutdown below.
      if (i < CALLS - 1) client.close()
    }
    t.same(
      texts,
      Array.from({ length: CALLS }, (_, i) => `call ${i}`),
      'every call answered',
    )
    const workers = () =>
      new Set(
        out()
          .split('\n')
          .filter((l) => l.includes('"msg":"request"') && l.includes('/demo.Echo/Say'))
          .map((l) => (JSON.parse(l) as { worker: number }).worker),
      )
    // Each worker writes its access lines in batches, within 100 ms. With SO_REUSEPORT the
    // kernel's hash of 30 connections' source ports leaves one worker idle once in 2^29.
    await eventually(
      () => `both workers answered: ${[...workers()]}`,
      5000,
      async () => workers().size === 2,
    )

    // SIGTERM with an HTTP/2 connection open: the workers send GOAWAY and close it, and the cluster exits 0.
    proc.kill('SIGTERM')
    t.equal(await exited, 0, 'the cluster shut down cleanly')
    t.notMatch(out(), /shutdown timeout: closing the connections still open/, 'the open connection did not hold the shutdown to its timeout')
  })
}
