// The one shutdown of a serving process, a single gateway or a cluster's primary: readiness off,
// the drain delay, the proxy listener closed with its requests in flight finished, then the
// watcher, the admin listener and what the policy runs.
import type { Logger } from 'pino'
import { drainLog } from '../log.js'
import type { LivePolicy } from './live_policy.js'

export interface ShutdownSteps {
  logger: Logger
  live: LivePolicy
  /**
   * Readiness is off: endpoint controllers need time to see /readyz fail and stop sending
   * traffic here (`shutdown.drain_delay`). A primary's workers each wait on their own.
   */
  drain(): Promise<void>
  /** Stops accepting; requests in flight get `timeoutMs` to finish (0: closed at once). */
  closeProxy(timeoutMs: number): Promise<void>
  /** Read when the shutdown starts: the process may still be starting when it is built. */
  watcher(): { close(): void } | undefined
  admin(): { close(): Promise<unknown> } | undefined
  /** The upstreams' background health checks (../proxy/upstream_health.ts). */
  upstreamChecks?: { stop(): void }
  /** The span exporter (../tracing/otel.ts): what it still holds is sent, within the shutdown timeout. */
  tracing?: { shutdown(timeoutMs: number): Promise<void> }
}

// How long an immediate close (tests, a worker whose primary is gone) waits for the last spans.
const IMMEDIATE_FLUSH_MS = 1000
// How long the last log lines may take to reach standard output before the process exits.
const LOG_DRAIN_MS = 1000

export class Shutdown {
  private gracefully: Promise<void> | undefined
  private closed: Promise<void> | undefined

  constructor(private readonly steps: ShutdownSteps) {}

  /** From the first moment of a graceful shutdown: /readyz answers 503. */
  get started(): boolean {
    return this.gracefully !== undefined
  }

  /** Readiness off, the drain delay, then everything closed, requests in flight given `shutdown.timeout`. */
  graceful(): Promise<void> {
    return (this.gracefully ??= this.drainAndClose())
  }

  /** Closes everything at once (tests; a worker whose primary is gone). */
  now(): Promise<void> {
    return this.close(0)
  }

  private async drainAndClose(): Promise<void> {
    const { logger, live } = this.steps
    logger.info({ drain_delay_ms: live.current.shutdown.drainDelayMs }, 'shutting down: readiness off')
    await this.steps.drain()
    await this.close(live.current.shutdown.timeoutMs)
    logger.info('shut down')
    // The process exits next: the last access lines, and this one, must be written first.
    await drainLog(logger, LOG_DRAIN_MS)
  }

  private close(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    return (this.closed ??= (async () => {
      this.steps.watcher()?.close()
      this.steps.upstreamChecks?.stop()
      await this.steps.closeProxy(timeoutMs)
      await this.steps.admin()?.close()
      await this.steps.live.stop()
      // After the last request's span ended, within what is left of the shutdown timeout (a
      // second for an immediate close): a collector that is down cannot hold the exit.
      await this.steps.tracing?.shutdown(timeoutMs > 0 ? deadline - Date.now() : IMMEDIATE_FLUSH_MS)
    })())
  }
}
