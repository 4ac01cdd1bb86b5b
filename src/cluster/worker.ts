// A worker of `workers: N`: the proxy listener only, on a socket of its own that the workers
// share the port of (SO_REUSEPORT) or on the one node:cluster's primary shares. No admin
// listener and no file watching (the primary does both); it acts on the primary's messages.
import { setTimeout as sleep } from 'node:timers/promises'
import type { RevocationStore, Revocation } from '../revocation/store.js'
import { startGateway, type RunningGateway } from '../server.js'
import { ListenError } from '../lifecycle/listen.js'
import { logStartupError } from '../lifecycle/policy_error.js'
import { PolicyError } from '../policy/problems.js'
import { Channel, REUSE_PORT_ENV, type Question } from './ipc.js'

// How long the primary may take to hand over the memory backend's revocations.
const HANDOVER_TIMEOUT_MS = 5000

export async function runWorker(policyFile: string, worker: number): Promise<number> {
  const reusePort = ownSocketPort(process.env[REUSE_PORT_ENV])
  // A Ctrl-C in a terminal (or a HUP) reaches the whole process group: the primary decides what
  // happens and tells each worker; a worker acting on its own would skip the drain.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {})

  let running: RunningGateway | undefined
  // Known once the policy is loaded; until then a revocation sent here is in the hand-over.
  let store: RevocationStore | undefined
  const channel = new Channel(
    (message, done) => {
      if (process.connected) process.send!(message, undefined, {}, done)
      else done(new Error('disconnected'))
    },
    (question) => answer(question, running, store),
  )
  process.on('message', (message) => {
    if (channel.receive(message)?.kind === 'shutdown') void shutdown(running)
  })
  // The primary is gone (it crashed or was killed): nobody hands this process connections any more.
  process.on('disconnect', () => void exitAlone(running))
  channel.tell({ kind: 'attached' })

  try {
    running = await startGateway({
      policyFile,
      worker,
      admin: false,
      watch: false,
      ...(reusePort !== undefined ? { listen: { port: reusePort, reusePort: true } } : {}),
      beforeListen: async (gateway) => {
        store = gateway.policy.revocation?.store
        if (store?.settings.backend === 'memory') {
          // The memory backend lives in processes: a new worker starts from the primary's copy
          // (revocations stored since reach it as they come), or it would let revoked tokens by.
          const entries = await channel.ask<Revocation[]>({ kind: 'revocations' }, HANDOVER_TIMEOUT_MS)
          for (const entry of entries) store.remember(entry)
        }
      },
    })
  } catch (err) {
    // Fail closed: a worker that cannot load its policy does not serve; the primary starts another.
    if (err instanceof PolicyError || err instanceof ListenError) logStartupError(err)
    else process.stderr.write(`jwtgate worker ${worker}: ${(err as Error).message}\n`)
    process.exit(1)
  }
  channel.tell({ kind: 'listening' })
  return new Promise<number>(() => {})
}

/** The port to open a socket of its own on, when the primary said so; else the primary's socket is shared. */
function ownSocketPort(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const port = Number(value)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${REUSE_PORT_ENV} is not a port: ${value}`)
  return port
}

async function answer(question: Question, running: RunningGateway | undefined, store: RevocationStore | undefined): Promise<unknown> {
  switch (question.kind) {
    case 'readiness':
      if (!running) return { reasons: ['starting'], degraded: [] }
      return running.readiness()
    case 'metrics':
      if (!running) return []
      return running.metrics.registry.getMetricsAsJSON()
    case 'status':
      if (!running) throw new Error('still starting')
      return running.status()
    case 'reload':
      if (!running) throw new Error('still starting; it reads the policy file as it starts')
      return running.reload()
    case 'revoke': {
      const current = running ? running.gateway.policy.revocation?.store : store
      // Not loaded yet: the hand-over (asked after the store is known) includes this one.
      if (!running && !store) return true
      if (!current) throw new Error('its policy has no revocation: section')
      current.remember(question.entry)
      return true
    }
    case 'revocations':
      throw new Error('a worker holds no revocations for others')
  }
}

async function shutdown(running: RunningGateway | undefined): Promise<void> {
  if (running) await running.shutdown()
  process.exit(0)
}

async function exitAlone(running: RunningGateway | undefined): Promise<void> {
  running?.logger.error('the primary process is gone; closing')
  if (running) await Promise.race([running.close(), sleep(running.gateway.policy.shutdown.timeoutMs)])
  process.exit(1)
}
