// The benchmark's upstream: 200 and a small body for every request, keep-alive. Prints
// {"url": ...} once listening; exits when its stdin closes (the benchmark is gone).
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const body = Buffer.from('{"ok":true}\n')
const server = createServer((req, res) => {
  req.resume()
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body)
})
// Idle connections from the proxies' pools survive the gaps between runs.
server.keepAliveTimeout = 120_000
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}` }))
})
process.stdin.on('close', () => process.exit(0)).resume()
