// `jwtgate serve | validate | demo`.
import { parseArgs } from 'node:util'
import { PolicyError, formatProblem } from '../policy/problems.js'
import { createLogger } from '../log.js'
import { loadPolicy, startGateway } from '../server.js'
import { runDemo } from './demo.js'

const USAGE = `usage:
  jwtgate serve -c policy.yaml        start the gateway (or set JWTGATE_CONFIG)
  jwtgate validate -c policy.yaml     check a policy; prints every problem as file:line:col message
  jwtgate demo [--check]              a local issuer, an echo upstream and the gateway, end to end
`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  const { values } = parseArgs({
    args: rest,
    options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: false,
  })
  const policyFile = values.config ?? process.env.JWTGATE_CONFIG
  switch (command) {
    case 'serve':
      if (!policyFile) return usage('serve needs -c policy.yaml or JWTGATE_CONFIG')
      return serve(policyFile)
    case 'validate':
      if (!policyFile) return usage('validate needs -c policy.yaml')
      return validate(policyFile)
    case 'demo':
      return runDemo({ check: values.check ?? false })
    case undefined:
    case 'help':
      process.stdout.write(USAGE)
      return 0
    default:
      return usage(`unknown command ${command}`)
  }
}

function usage(message: string): number {
  process.stderr.write(`jwtgate: ${message}\n${USAGE}`)
  return 2
}

function validate(policyFile: string): number {
  const silent = createLogger('silent')
  try {
    const policy = loadPolicy(policyFile, silent)
    for (const issuer of policy.issuers.values()) issuer.stop()
    process.stdout.write(`${policyFile}: ok (${policy.routes.size} routes, ${policy.issuers.size} issuers, ${policy.upstreams.size} upstreams)\n`)
    return 0
  } catch (err) {
    return reportPolicyError(err)
  }
}

function reportPolicyError(err: unknown): number {
  if (!(err instanceof PolicyError)) throw err
  for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`)
  process.stderr.write(`${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}; the policy was not loaded\n`)
  return 1
}

async function serve(policyFile: string): Promise<number> {
  let running
  try {
    running = await startGateway({ policyFile })
  } catch (err) {
    return reportPolicyError(err)
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      running.logger.info({ signal }, 'shutting down')
      void running.close().then(resolve)
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  return 0
}

process.exitCode = await main(process.argv.slice(2)).catch((err: Error) => {
  process.stderr.write(`jwtgate: ${err.stack ?? err.message}\n`)
  return 1
})
