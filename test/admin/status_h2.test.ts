// The status page's connection counts for an HTTP/2 upstream (protocol h2c): its sessions open
// and carrying streams, and the streams open on them, read through the same accessor as the
// HTTP/1.1 pools' (UpstreamPools.stats), while requests are held by the upstream and after.
import t from 'tap'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { eventually, gateway, get } from '../support/harness.js'

/** An h2c upstream that holds /hold/* answers until release() (each on a stream of the gateway's session). */
async function holdingUpstream(t: { teardown(fn: () => unknown): void }) {
  const held: http2.ServerHttp2Stream[] = []
  const server = http2.createServer()
  server.on('stream', (stream, headers) => {
    if (String(headers[':path']).startsWith('/hold/')) held.push(stream)
    else stream.respond({ ':status': 200 }, { endStream: true })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held,
    release() {
      for (const s of held.splice(0)) if (!s.closed) s.respond({ ':status': 200 }, { endStream: true })
    },
  }
}

t.test('/status.json and the page count an HTTP/2 upstream’s sessions and streams', async (t) => {
  const up = await holdingUpstream(t)
  const gw = await gateway(
    t,
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  grpc-like: { url: "${up.url}", protocol: h2c, timeout: 10s }
routes:
  - { path: /**, upstream: grpc-like, auth: none }
`,
  )
  const connections = async () => (await get(`${gw.adminUrl}/status.json`)).json.upstreams[0].connections
  t.same(await connections(), { open: 0, in_use: 0, waiting: 0, streams: 0 }, 'no session before the first request')

  const pending = [1, 2, 3].map((i) => fetch(`${gw.url}/hold/${i}`))
  await eventually('three requests held by the upstream', 10_000, () => up.held.length === 3)
  t.same(await connections(), { open: 1, in_use: 1, waiting: 0, streams: 3 }, 'one session carrying three streams')
  const page = await (await fetch(`${gw.adminUrl}/`)).text()
  t.match(page, /1 open, 1 in use, 3 streams/, 'the page shows them')

  up.release()
  t.same(
    (await Promise.all(pending)).map((r) => r.status),
    [200, 200, 200],
  )
  await eventually('the streams closed', 10_000, async () => (await connections()).streams === 0)
  t.same(await connections(), { open: 1, in_use: 0, waiting: 0, streams: 0 }, 'the session stays open for the next request')
})
