// `jwtgate serve | validate | explain | test | revoke | schema | demo`, and their --help and --version.
import { parseArgs } from 'node:util'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { policySchema } from '#policy-schema'
import type { Explanation } from '../explain.js'
import type { PolicyTestRun } from './policy_test.js'
import { printPolicyError } from '../lifecycle/policy_error.js'
import { formatUnchecked, formatWarning, validatePolicy, validationResult, validationSummary, type Validation } from './validate.js'
import type { ReadOptions } from '../policy/load.js'
import { COMMANDS, helpOrVersion, isCommand, misuse, USAGE, versionLine } from './usage.js'
import { ListenError } from '../lifecycle/listen.js'
import { PolicyError } from '../policy/problems.js'

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    const topic = command === 'help' ? rest[0] : undefined
    if (topic !== undefined && !isCommand(topic)) return misuse(`unknown command ${topic}`)
    process.stdout.write(topic ? COMMANDS[topic] : USAGE)
    return 0
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(versionLine())
    return 0
  }
  if (!isCommand(command)) return misuse(command.startsWith('-') ? `${command} goes after a command` : `unknown command ${command}`)
  const answer = helpOrVersion(rest, command)
  if (answer !== undefined) {
    process.stdout.write(answer)
    return 0
  }
  switch (command) {
    case 'explain':
      return explainCommand(rest)
    case 'test':
      return testCommand(rest)
    case 'revoke':
      return revokeCommand(rest)
    case 'serve':
      return serveCommand(rest)
    case 'validate':
      return validateCommand(rest)
    case 'demo':
      return demoCommand(rest)
    case 'schema':
      return schemaCommand(rest)
  }
}

async function serveCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(() => parseArgs({ args, allowPositionals: false, options: { config: { type: 'string', short: 'c' } } }))
  if (typeof parsed === 'string') return misuse(parsed, 'serve')
  const policyFile = parsed.values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return misuse('serve needs -c policy.yaml or JWTGATE_CONFIG', 'serve')
  // Loaded on demand: fastify and the proxy cost a second of start-up the offline commands skip.
  return (await import('../lifecycle/serve.js')).serve(policyFile)
}

async function demoCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(() => parseArgs({ args, allowPositionals: false, options: { check: { type: 'boolean' } } }))
  if (typeof parsed === 'string') return misuse(parsed, 'demo')
  // Loaded on demand, like serve.
  return (await import('./demo.js')).runDemo({ check: parsed.values.check ?? false })
}

function schemaCommand(args: string[]): number {
  const parsed = parseCommand(() => parseArgs({ args, allowPositionals: false, options: { out: { type: 'string' } } }))
  if (typeof parsed === 'string') return misuse(parsed, 'schema')
  return schema(parsed.values.out)
}

// explain and test are loaded on demand, like serve: a started gateway has no use for them (the
// test file's schema, compiled with ajv when policy_test.js loads, would be its only ajv).
async function explainCommand(args: string[]): Promise<number> {
  const { explain, explainArguments, explainExitCode, explainOutput } = await import('../explain.js')
  const parsed = explainArguments(args, process.env)
  if (typeof parsed === 'string') return misuse(parsed, 'explain')
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
  if (typeof parsed === 'string') return misuse(parsed, 'test')
  const policyFile = parsed.values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return misuse('test needs -c policy.yaml', 'test')
  if (parsed.positionals.length === 0) return misuse('test needs at least one test file, as in: jwtgate test -c policy.yaml policy.test.yaml', 'test')
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
  if (typeof parsed === 'string') return misuse(parsed, 'revoke')
  const { values } = parsed
  const policyFile = values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return misuse('revoke needs -c policy.yaml', 'revoke')
  if ((values.jti === undefined) === (values.sub === undefined)) return misuse('revoke needs --jti ID or --sub USER (one of them)', 'revoke')
  if (values.jti !== undefined && values.before !== undefined) return misuse('--before goes with --sub; a --jti revocation takes --exp', 'revoke')
  if (values.sub !== undefined && values.exp !== undefined) return misuse('--exp goes with --jti; a --sub revocation takes --before', 'revoke')
  if (values.jti === '' || values.sub === '') return misuse('the jti or sub must not be empty', 'revoke')
  if (values.iss !== undefined && values['all-issuers']) return misuse('give --iss ISSUER or --all-issuers, not both', 'revoke')
  const { checkIssuer } = await import('../admin/revocations.js')
  const scope = checkIssuer(values.iss)
  if (typeof scope === 'string') return misuse(scope.replace(/^iss/, '--iss'), 'revoke')
  const seconds = (name: string, text: string | undefined): number | string | undefined => {
    if (text === undefined) return undefined
    return /^[0-9]+(\.[0-9]+)?$/.test(text) && Number(text) > 0
      ? Number(text)
      : `--${name} must be unix seconds, as in --${name} ${Math.ceil(Date.now() / 1000)}`
  }
  const exp = seconds('exp', values.exp)
  const before = seconds('before', values.before)
  if (typeof exp === 'string') return misuse(exp, 'revoke')
  if (typeof before === 'string') return misuse(before, 'revoke')
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

async function validateCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(() =>
    parseArgs({
      args,
      allowPositionals: false,
      options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, offline: { type: 'boolean' } },
    }),
  )
  if (typeof parsed === 'string') return misuse(parsed, 'validate')
  const policyFile = parsed.values.config ?? process.env.JWTGATE_CONFIG
  if (!policyFile) return misuse('validate needs -c policy.yaml', 'validate')
  const options = { offline: parsed.values.offline === true }
  return parsed.values.json ? validateJson(policyFile, options) : validate(policyFile, options)
}

/** `validate --json`: one object on stdout, for CI and editors, whatever the outcome. */
function validateJson(policyFile: string, options: ReadOptions): number {
  const result = validationResult(policyFile, options)
  process.stdout.write(`${JSON.stringify(result)}\n`)
  return result.valid ? 0 : 1
}

function validate(policyFile: string, options: ReadOptions): number {
  let validation: Validation
  try {
    validation = validatePolicy(policyFile, options)
  } catch (err) {
    return printPolicyError(err)
  }
  // Warnings do not fail validation: they are default-deny working as designed, said aloud.
  for (const w of validation.warnings) process.stderr.write(`${formatWarning(w)}\n`)
  for (const u of validation.unchecked ?? []) process.stderr.write(`${formatUnchecked(u)}\n`)
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
  // A bad policy or a listener that cannot open is said in its own words; anything else is a bug.
  if (err instanceof PolicyError || err instanceof ListenError) return printPolicyError(err)
  process.stderr.write(`jwtgate: ${err.stack ?? err.message}\n`)
  return 1
})
