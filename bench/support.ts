// Small helpers the bench scripts share: ports, medians.
import { type AddressInfo, connect, createServer } from 'node:net'

export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

// Ports handed out in this run. The kernel may give a port that was just released to the next
// bind(0) again; two gateways told the same port would be one gateway answering for both (a
// run once primed the revocation row against the HS256 gateway: every token wrong_issuer).
const portsGiven = new Set<number>()

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await unusedPort()
    if (portsGiven.has(port)) continue
    portsGiven.add(port)
    return port
  }
  throw new Error('no free port found in 100 attempts')
}

function unusedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Whether something accepts connections on 127.0.0.1:port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.setTimeout(1000)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => {
      socket.destroy()
      resolve(false)
    })
  })
}
