// `jwtgate serve | validate | explain | test | demo`.
import { parseArgs } from 'node:util'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { policySchema } from '#policy-schema'
import type { Explanation } from './explain.js'
import type { PolicyTestRun } from './policy_test.js'
import { printPolicyError } from '../lifecycle/policy_error.js'
import { formatWarning, validatePolicy, validationSummary, type Validation } from './validate.js'

const USAGE = `usage:
  jwtgate serve -c policy.yaml        start the gateway (or set JWTGATE_CONFIG)
  jwtgate validate -c policy.yaml     check a policy; prints every problem as file:line:col message
  jwtgate explain -c policy.yaml METHOD PATH [--host H] [--token JWT | --claims JSON] [--origin O [--preflight METHOD] [--preflight-headers H,H]] [--json]
                                      what the gateway would do with one request, and why
                                      (exit 0 allowed, 1 denied)
  jwtgate test -c policy.yaml FILE.test.yaml...
                                      check the policy against expected decisions, offline
  jwtgate revoke -c policy.yaml (--jti ID [--exp UNIX] | --sub USER [--before UNIX]) [--iss ISSUER | --all-issuers]
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
      // Loaded on demand: fastify and the proxy cost a second of start-up the offline commands skip.
      return (await import('../lifecycle/serve.js')).serve(policyFile)
    case 'validate':
      if (!policyFile) return usage('validate needs -c policy.yaml')
      return validate(policyFile)
    case 'demo':
      // Loaded on demand, like serve.
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

// explain and test are loaded on demand, like serve: a started gateway has no use for them (the
// test file's schema, compiled with ajv when policy_test.js loads, would be its only ajv).
async function explainCommand(args: string[]): Promise<number> {
  const { explain, explainArguments, explainExitCode, explainOutput } = await import('./explain.js')
  const parsed = explainArguments(args, process.env)
  if (typeof parsed === 'string') return usage(parsed)
  let explanation: Explanation
  try {
    explanation = await explain(parsed.options)
  } catch (err) {
    return printPolicyError(err)
  }
  process.stdout.write(explainOutput(explanation, parsed.json))
  return explainExitCode(explanation)
}

async function testCommand(args: string[]): Promise<number> {
  const { runPolicyTests, testRunReport } = await import('./policy_test.js')
  const parsed = parseCommand(() => parseArgs({ args, allowPositionals: true, options: { config: { type: 'string', short: 'c' } } }))
  if (typeof parsed === 'string') return usage(parsed)
  const policyFile = parsed.values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return usage('test needs -c policy.yaml')
  if (parsed.positionals.length === 0) return usage('test needs at least one test file, as in: jwtgate test -c policy.yaml policy.test.yaml')
  let run: PolicyTestRun
  try {
    run = await runPolicyTests(policyFile, parsed.positionals)
  } catch (err) {
    return printPolicyError(err)
  }
  const report = testRunReport(run)
  process.stdout.write(report.stdout)
  process.stderr.write(report.stderr)
  return report.code
}

async function revokeCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(() =>
    parseArgs({
      args,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        jti: { type: 'string' },
        exp: { type: 'string' },
        sub: { type: 'string' },
        before: { type: 'string' },
        iss: { type: 'string' },
        'all-issuers': { type: 'boolean' },
      },
    }),
  )
  if (typeof parsed === 'string') return usage(parsed)
  const { values } = parsed
  const policyFile = values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return usage('revoke needs -c policy.yaml')
  if ((values.jti === undefined) === (values.sub === undefined)) return usage('revoke needs --jti ID or --sub USER (one of them)')
  if (values.jti !== undefined && values.before !== undefined) return usage('--before goes with --sub; a --jti revocation takes --exp')
  if (values.sub !== undefined && values.exp !== undefined) return usage('--exp goes with --jti; a --sub revocation takes --before')
  if (values.jti === '' || values.sub === '') return usage('the jti or sub must not be empty')
  if (values.iss !== undefined && values['all-issuers']) return usage('give --iss ISSUER or --all-issuers, not both')
  const { checkIssuer } = await import('../admin/revocations.js')
  const scope = checkIssuer(values.iss)
  if (typeof scope === 'string') return usage(scope.replace(/^iss/, '--iss'))
  const seconds = (name: string, text: string | undefined): number | string | undefined => {
    if (text === undefined) return undefined
    return /^[0-9]+(\.[0-9]+)?$/.test(text) && Number(text) > 0
      ? Number(text)
      : `--${name} must be unix seconds, as in --${name} ${Math.ceil(Date.now() / 1000)}`
  }
  const exp = seconds('exp', values.exp)
  const before = seconds('before', values.before)
  if (typeof exp === 'string') return usage(exp)
  if (typeof before === 'string') return usage(before)
  // Loaded on demand, like serve: the redis client is only needed here.
  const { runRevoke } = await import('./revocations.js')
  const iss = scope.iss !== undefined ? { iss: scope.iss } : {}
  return runRevoke(values.jti !== undefined ? { policyFile, jti: values.jti, exp, ...iss } : { policyFile, sub: values.sub!, before, ...iss })
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
  let validation: Validation
  try {
    validation = validatePolicy(policyFile)
  } catch (err) {
    return printPolicyError(err)
  }
  // Warnings do not fail validation: they are default-deny working as designed, said aloud.
  for (const w of validation.warnings) process.stderr.write(`${formatWarning(w)}\n`)
  process.stdout.write(`${validationSummary(validation)}\n`)
  return 0
}

/** The policy's JSON Schema, for editors: `jwtgate schema --out schema/policy.schema.json`. */
function schema(out: string | undefined): number {
  const text = JSON.stringify(policySchema, null, 2) + '\n'
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true })
    writeFileSync(out, text)
  } else process.stdout.write(text)
  return 0
}

process.exitCode = await main(process.argv.slice(2)).catch((err: Error) => {
  process.stderr.write(`jwtgate: ${err.stack ?? err.message}\n`)
  return 1
})
