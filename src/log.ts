// The process logger. Tokens, cookies and secrets never reach a log line: the access log lists
// chosen fields only, and these paths are redacted in case a header object is ever logged.
import pino, { type Logger } from 'pino'

export function createLogger(level = 'info', destination?: pino.DestinationStream): Logger {
  return pino({
    level,
    base: { service: 'jwtgate' },
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'token', 'secret', '*.secret'],
      censor: '[redacted]',
    },
  }, destination)
}
