// Opening a listener (the proxy's or the admin's) and naming the address it got.
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, FastifyListenOptions } from 'fastify'

/** A listener that could not open: which one, where, and why in a sentence; `code` is the system's (EADDRINUSE). */
export class ListenError extends Error {
  constructor(
    readonly listener: 'proxy' | 'admin',
    readonly address: string,
    readonly code: string | undefined,
    detail: string,
  ) {
    super(`cannot open the ${listener} listener on ${address}: ${REASONS[code ?? ''] ?? detail}`)
    this.name = 'ListenError'
  }
}

const REASONS: Record<string, string> = {
  EADDRINUSE: 'the port is in use (another jwtgate, or another program, holds it)',
  EACCES: 'permission denied (a port below 1024 needs privileges)',
  EADDRNOTAVAIL: 'this machine has no such address',
}

/**
 * Listens and returns scheme://host:port (port 0 becomes the port chosen); throws ListenError.
 * `reusePort`: a socket of its own with SO_REUSEPORT, which in a cluster worker also means not
 * the primary's shared one (`exclusive`; fastify hands both options to net.Server.listen).
 */
export async function listen(app: FastifyInstance, host: string, port: number, listener: 'proxy' | 'admin' = 'proxy', reusePort = false): Promise<string> {
  try {
    await app.listen({ host, port, ...(reusePort ? { reusePort: true, exclusive: true } : {}) } as FastifyListenOptions)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new ListenError(listener, host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`, e.code, e.message)
  }
  const address = app.server.address() as AddressInfo
  const scheme = 'setSecureContext' in app.server ? 'https' : 'http'
  return `${scheme}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
}
