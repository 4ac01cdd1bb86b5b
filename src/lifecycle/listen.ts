// Opening a listener (the proxy's or the admin's) and naming the address it got.
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'

/** Listens and returns scheme://host:port (port 0 becomes the port chosen). */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port })
  const address = app.server.address() as AddressInfo
  const scheme = 'setSecureContext' in app.server ? 'https' : 'http'
  return `${scheme}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
}
