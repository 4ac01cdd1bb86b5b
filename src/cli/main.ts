// `jwtgate serve | validate | explain | test | demo`.
import cluster from 'node:cluster'
import { parseArgs } from 'node:util'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { createLogger } from '../log.js'
import { loadPolicy } from '../policy/compile.js'
import { policyJsonSchema } from '../policy/json_schema.js'
import { lintIssuers, lintRoutes } from '../policy/lint.js'
import { readPolicySource } from '../policy/load.js'
import { explain } from './explain.js'
import { runPolicyTests } from './policy_test.js'
import { stopIssuers } from '../lifecycle/live_policy.js'
import { printPolicyError } from '../lifecycle/policy_error.js'
import type { PolicyProblem } from '../policy/problems.js'

const USAGE = `usage:
  jwtgate serve -c policy.yaml        start the gateway (or set JWTGATE_CONFIG)
  jwtgate validate -c policy.yaml     check a policy; prints every problem as file:line:col message
  jwtgate explain -c policy.yaml METHOD PATH [--host H] [--token JWT | --claims JSON] [--origin O [--preflight METHOD] [--preflight-headers H,H]] [--json]
                                      what the gateway would do with one request, and why
                                      (exit 0 allowed, 1 denied)
  jwtgate test -c policy.yaml FILE.test.yaml...
                                      check the policy against expected decisions, offline
  jwtgate revoke -c policy.yaml (--jti ID [--exp UNIX] | --sub USER [--before UNIX])
                                      revoke one token, or a subject's tokens issued before a
                                      moment (default now), in the policy's revocation backend
  jwtgate schema [--out FILE]         the policy's JSON Schema, for editors
  jwtgate demo [--check]              a local issuer, an echo upstream and the gateway, end to end
`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === 'explain') return explainCommand(rest)
  if (command === 'test') return testCommand(rest)
  if (command === 'revoke') return revokeCommand(rest)
  const { values } = parseArgs({
    args: rest,
    options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
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
      // Loaded on demand: fastify and the proxy cost a second of start-up the offline commands skip.
      return (await import('./demo.js')).runDemo({ check: values.check ?? false })
    case 'schema':
      return schema(values.out)
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

function explainCommand(args: string[]): number | Promise<number> {
  const parsed = parseCommand(() => parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' }, host: { type: 'string' }, token: { type: 'string' }, claims: { type: 'string' }, json: { type: 'boolean' },
      origin: { type: 'string' }, preflight: { type: 'string' }, 'preflight-headers': { type: 'string' },
    },
  }))
  if (typeof parsed === 'string') return usage(parsed)
  const { values, positionals } = parsed
  const policyFile = values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return usage('explain needs -c policy.yaml')
  if (positionals.length !== 2) return usage('explain needs a METHOD and a PATH, as in: jwtgate explain -c policy.yaml GET /api/orders')
  const method = positionals[0]!.toUpperCase()
  if (!/^[A-Z]+$/.test(method)) return usage(`"${positionals[0]}" is not an HTTP method`)
  if (values.token !== undefined && values.claims !== undefined) return usage('give --token or --claims, not both')
  const claims = values.claims === undefined ? undefined : claimsArgument(values.claims)
  if (typeof claims === 'string') return usage(claims)
  // A token pasted with its scheme is still the token.
  const token = values.token?.replace(/^bearer\s+/i, '')
  if (values.preflight !== undefined && (method !== 'OPTIONS' || values.origin === undefined)) return usage('--preflight METHOD describes an OPTIONS request with --origin')
  if (values['preflight-headers'] !== undefined && values.preflight === undefined) return usage('--preflight-headers goes with --preflight')
  const preflight = values.preflight === undefined ? undefined : { method: values.preflight.toUpperCase(), headers: (values['preflight-headers'] ?? '').split(',').map((h) => h.trim()).filter(Boolean) }
  return explain({ policyFile, method, target: positionals[1]!, host: values.host, token, claims, origin: values.origin, preflight, json: values.json === true })
}

function claimsArgument(text: string): Record<string, unknown> | string {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return `--claims is not valid JSON: ${(err as Error).message}`
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return '--claims must be a JSON object, as in \'{"sub":"alice","roles":["admin"]}\''
  return value as Record<string, unknown>
}

function testCommand(args: string[]): number | Promise<number> {
  const parsed = parseCommand(() => parseArgs({ args, allowPositionals: true, options: { config: { type: 'string', short: 'c' } } }))
  if (typeof parsed === 'string') return usage(parsed)
  const policyFile = parsed.values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return usage('test needs -c policy.yaml')
  if (parsed.positionals.length === 0) return usage('test needs at least one test file, as in: jwtgate test -c policy.yaml policy.test.yaml')
  return runPolicyTests(policyFile, parsed.positionals)
}

async function revokeCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(() => parseArgs({
    args,
    allowPositionals: false,
    options: { config: { type: 'string', short: 'c' }, jti: { type: 'string' }, exp: { type: 'string' }, sub: { type: 'string' }, before: { type: 'string' } },
  }))
  if (typeof parsed === 'string') return usage(parsed)
  const { values } = parsed
  const policyFile = values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return usage('revoke needs -c policy.yaml')
  if ((values.jti === undefined) === (values.sub === undefined)) return usage('revoke needs --jti ID or --sub USER (one of them)')
  if (values.jti !== undefined && values.before !== undefined) return usage('--before goes with --sub; a --jti revocation takes --exp')
  if (values.sub !== undefined && values.exp !== undefined) return usage('--exp goes with --jti; a --sub revocation takes --before')
  if (values.jti === '' || values.sub === '') return usage('the jti or sub must not be empty')
  const seconds = (name: string, text: string | undefined): number | string | undefined => {
    if (text === undefined) return undefined
    return /^[0-9]+(\.[0-9]+)?$/.test(text) && Number(text) > 0 ? Number(text) : `--${name} must be unix seconds, as in --${name} ${Math.ceil(Date.now() / 1000)}`
  }
  const exp = seconds('exp', values.exp)
  const before = seconds('before', values.before)
  if (typeof exp === 'string') return usage(exp)
  if (typeof before === 'string') return usage(before)
  // Loaded on demand, like serve: the redis client is only needed here.
  const { runRevoke } = await import('./revocations.js')
  return runRevoke(values.jti !== undefined ? { policyFile, jti: values.jti, exp } : { policyFile, sub: values.sub!, before })
}

/** A usage message instead of an exception on an unknown or incomplete option. */
function parseCommand<T>(parse: () => T): T | string {
  try {
    return parse()
  } catch (err) {
    return (err as Error).message
  }
}

function validate(policyFile: string): number {
  const silent = createLogger('silent')
  try {
    const policy = loadPolicy(policyFile, silent)
    for (const issuer of policy.issuers.values()) issuer.stop()
    // Warnings do not fail validation: they are default-deny working as designed, said aloud.
    const source = readPolicySource(policyFile)
    for (const w of lintRoutes(source.document.routes)) {
      source.problems.add(['routes', w.route, 'path'], w.message)
      process.stderr.write(`${formatWarning(source.problems.list.at(-1)!)}\n`)
    }
    for (const w of lintIssuers(source.document.issuers)) {
      source.problems.add(['issuers', w.issuer, 'issuer'], w.message)
      process.stderr.write(`${formatWarning(source.problems.list.at(-1)!)}\n`)
    }
    process.stdout.write(`${policyFile}: ok (${policy.routes.size} routes, ${policy.issuers.size} issuers, ${policy.upstreams.size} upstreams)\n`)
    return 0
  } catch (err) {
    return printPolicyError(err)
  }
}

function formatWarning(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.col} warning: ${p.message}`
}

/** The policy's JSON Schema, for editors: `jwtgate schema --out schema/policy.schema.json`. */
function schema(out: string | undefined): number {
  const text = JSON.stringify(policyJsonSchema(), null, 2) + '\n'
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true })
    writeFileSync(out, text)
  }
  else process.stdout.write(text)
  return 0
}

async function serve(policyFile: string): Promise<number> {
  // A worker of `workers: N`: node:cluster forked it with the same command line.
  const worker = Number(process.env.JWTGATE_WORKER)
  if (cluster.isWorker && worker > 0) return (await import('../cluster/worker.js')).runWorker(policyFile, worker)
  let workers: number
  try {
    workers = workerCount(policyFile)
  } catch (err) {
    return printPolicyError(err)
  }
  if (workers > 1) return (await import('../cluster/primary.js')).runPrimary(policyFile)
  const { startGateway } = await import('../server.js')
  const { default: closeWithGrace } = await import('close-with-grace')
  let running
  try {
    running = await startGateway({ policyFile, watch: true })
  } catch (err) {
    return printPolicyError(err)
  }
  const gateway = running
  process.on('SIGHUP', () => {
    gateway.logger.info('SIGHUP: reloading the policy')
    void gateway.reload()
  })
  const { drainDelayMs, timeoutMs } = gateway.gateway.policy.shutdown
  // SIGTERM/SIGINT: graceful shutdown bounded by drain delay + timeout; a second signal, or a
  // crash, exits at once (close-with-grace: the same handling fastify's own docs recommend).
  closeWithGrace({
    delay: drainDelayMs + timeoutMs,
    skip: ['SIGHUP'],
    logger: { error: (m: unknown) => gateway.logger.error({ detail: String(m) }, 'shutdown') },
    onSecondSignal: (signal) => {
      gateway.logger.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    },
  }, async ({ signal, err }) => {
    if (err) gateway.logger.error({ err: { message: err.message, stack: err.stack } }, 'unexpected error; shutting down')
    gateway.logger.info({ signal }, 'signal received')
    await gateway.shutdown()
  })
  return new Promise<number>(() => {})
}

/** The policy's `workers`, read before deciding what this process becomes; throws PolicyError. */
function workerCount(policyFile: string): number {
  const policy = loadPolicy(policyFile, createLogger('silent'))
  stopIssuers(policy)
  return policy.workers
}

process.exitCode = await main(process.argv.slice(2)).catch((err: Error) => {
  process.stderr.write(`jwtgate: ${err.stack ?? err.message}\n`)
  return 1
})
