// Starting and stopping a gateway from a policy file: what `jwtgate serve` and the tests run.
import type { AddressInfo } from 'node:net'
import type pino from 'pino'
import type { Logger } from 'pino'
import { buildGateway, type GatewayApp } from './gateway.js'
import { createLogger } from './log.js'
import { compilePolicy, type CompiledPolicy } from './policy/compile.js'
import { readPolicySource, type Env } from './policy/load.js'

export interface StartOptions {
  policyFile: string
  env?: Env
  /** Where log lines go; stdout by default. */
  logDestination?: pino.DestinationStream
  /** Overrides the policy's listen address (tests use port 0). */
  listen?: { host?: string; port?: number }
}

export interface RunningGateway {
  /** http://host:port the proxy listens on. */
  url: string
  port: number
  gateway: GatewayApp
  logger: Logger
  close(): Promise<void>
}

/** Loads and compiles a policy file; throws PolicyError listing every problem. */
export function loadPolicy(policyFile: string, logger: Logger, env?: Env): CompiledPolicy {
  return compilePolicy(readPolicySource(policyFile, env), logger)
}

export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const bootstrap = createLogger('info', options.logDestination)
  const policy = loadPolicy(options.policyFile, bootstrap, options.env)
  const logger = bootstrap
  logger.level = policy.logLevel
  const gateway = await buildGateway(policy, logger)
  // The first key fetches run before we listen, each bounded by its timeout; an IdP that is
  // down does not stop the start: its routes answer 503 until its keys arrive.
  await Promise.all([...policy.issuers.values()].map((issuer) => issuer.start()))
  const host = options.listen?.host ?? policy.listen.host
  const port = options.listen?.port ?? policy.listen.port
  await gateway.app.listen({ host, port })
  const address = gateway.app.server.address() as AddressInfo
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
  logger.info({ address: url, policy: policy.file, policy_hash: policy.hash.slice(0, 12), routes: policy.routes.size }, `jwtgate listening on ${url}`)
  return {
    url,
    port: address.port,
    gateway,
    logger,
    async close() {
      await gateway.app.close()
      for (const issuer of gateway.policy.issuers.values()) issuer.stop()
    },
  }
}
