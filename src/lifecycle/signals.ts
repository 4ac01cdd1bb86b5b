// What signals do to a serving process, a single gateway or a cluster's primary alike.
import closeWithGrace from 'close-with-grace'
import type { Logger } from 'pino'

export interface Signalled {
  logger: Logger
  reload(): Promise<unknown>
  /** The graceful shutdown; the process exits 0 when it is done. */
  shutdown(): Promise<void>
  /** The longest the graceful shutdown may take before the process exits 1 anyway. */
  graceMs: number
}

/**
 * SIGHUP reloads. SIGTERM or SIGINT shuts down gracefully, bounded by `graceMs`; a second
 * signal, or a crash, exits at once (close-with-grace: the handling fastify's own docs
 * recommend). Never resolves: the process exits when its shutdown is done.
 */
export function untilSignalled({ logger, reload, shutdown, graceMs }: Signalled): Promise<number> {
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the policy')
    void reload()
  })
  closeWithGrace(
    {
      delay: graceMs,
      skip: ['SIGHUP'],
      logger: { error: (m: unknown) => logger.error({ detail: String(m) }, 'shutdown') },
      onSecondSignal: (signal) => {
        // A cluster's workers follow: their IPC channel closes with this process.
        logger.warn({ signal }, 'second signal: exiting now')
        process.exit(1)
      },
    },
    async ({ signal, err }) => {
      if (err) logger.error({ err: { message: err.message, stack: err.stack } }, 'unexpected error; shutting down')
      logger.info({ signal }, 'signal received')
      await shutdown()
    },
  )
  return new Promise<number>(() => {})
}
