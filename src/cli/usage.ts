// What `jwtgate --help`, `jwtgate COMMAND --help` and `jwtgate --version` print, and the one
// line a misused command prints before exiting 2 (1 is kept for "the policy is invalid").
import { readFileSync } from 'node:fs'

export const COMMANDS = {
  serve: `usage: jwtgate serve -c policy.yaml
  Starts the gateway (or, with workers: N, a primary and its workers). The policy file may also
  be given as JWTGATE_CONFIG. SIGHUP or a change to the file reloads it; SIGTERM drains and stops.
  exit: 1 when the policy is invalid or a listener cannot open
`,
  validate: `usage: jwtgate validate -c policy.yaml [--json] [--offline]
  Checks a policy as the gateway would load it: every problem as file:line:col message on
  stderr, warnings too; a summary on stdout.
  --json      one JSON object on stdout: { file, valid, problems, warnings, routes, issuers, upstreams }
  --offline   for CI: read no secret file and no environment variable; \${VAR} and secret_file
              are taken as given, their values not checked
  exit: 0 valid (warnings allowed), 1 invalid, 2 misuse
`,
  explain: `usage: jwtgate explain -c policy.yaml METHOD PATH [--host H] [--token JWT | --claims JSON]
                       [--origin O [--preflight METHOD] [--preflight-headers H,H]] [--json]
                       [--dpop PROOF] [--client-cert PEM] (with --token) [--sender dpop,mtls] (with --claims)
  What the gateway would do with one request, and why: the route, the requirement, the token's
  header and claims (--token; never its signature) and each check it fails, with the value found
  and the value wanted.
  On a route that checks sender-constrained tokens, what a DPoP proof or client certificate must
  be; --dpop checks a proof, --client-cert presents a certificate, --sender takes the claims'
  binding as proven.
  exit: 0 allowed, 1 denied or the policy is invalid, 2 misuse
`,
  test: `usage: jwtgate test -c policy.yaml FILE.test.yaml...
  Checks the policy against expected decisions, offline (see docs/policy.md, "Policy tests").
  \${VAR} in a test file is replaced from the environment, as in the policy.
  exit: 0 every case passed, 1 a case failed or a file is invalid, 2 misuse
`,
  revoke: `usage: jwtgate revoke -c policy.yaml (--jti ID [--exp UNIX] | --sub USER [--before UNIX])
                      [--iss ISSUER | --all-issuers]
  Revokes one token, or a subject's tokens issued before a moment (default now), in the
  policy's revocation backend.
  exit: 0 revoked, 1 the backend did not take it, 2 misuse
`,
  schema: `usage: jwtgate schema [--out FILE]
  The policy's JSON Schema, for editors; on stdout without --out.
`,
  demo: `usage: jwtgate demo [--check]
  A local issuer, an echo upstream and the gateway with config/demo.yaml, end to end.
  DEMO_PORT sets the proxy's port (default 8080), DEMO_ADMIN_PORT the admin's (default 9901;
  any free port when only DEMO_PORT is set). --check runs the examples itself and exits.
`,
} as const

export type Command = keyof typeof COMMANDS

export const USAGE = `usage: jwtgate COMMAND [options]
  serve -c policy.yaml       start the gateway (or set JWTGATE_CONFIG)
  validate -c policy.yaml    check a policy; every problem as file:line:col message
  explain -c policy.yaml METHOD PATH [--token JWT | --claims JSON]
                             what the gateway would do with one request, and why
  test -c policy.yaml FILE.test.yaml...
                             check the policy against expected decisions, offline
  revoke -c policy.yaml (--jti ID | --sub USER)
                             revoke a token, or a subject's tokens, in the revocation backend
  schema [--out FILE]        the policy's JSON Schema, for editors
  demo [--check]             a local issuer, an echo upstream and the gateway, end to end
jwtgate COMMAND --help says more about one; jwtgate --version prints the version.
`

export function isCommand(name: string | undefined): name is Command {
  return name !== undefined && Object.hasOwn(COMMANDS, name)
}

/** `jwtgate 0.1.0`, from the package.json beside src/ and dist/ (the image ships it). */
export function versionLine(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return `jwtgate ${pkg.version}\n`
}

/** Prints the one line of a misuse and returns exit code 2. */
export function misuse(message: string, command?: Command): number {
  // node:util parseArgs adds a paragraph on `--` to every unknown option; the option is what matters.
  const first = message.replace(/\. To specify a positional argument.*$/s, '')
  process.stderr.write(`jwtgate: ${first}; see jwtgate ${command ? `${command} ` : ''}--help\n`)
  return 2
}

/** `--help`/`-h` or `--version` among a command's arguments (before any `--`): what to print instead of running it. */
export function helpOrVersion(args: readonly string[], command?: Command): string | undefined {
  const end = args.indexOf('--')
  const own = end < 0 ? args : args.slice(0, end)
  if (own.includes('--help') || own.includes('-h')) return command ? COMMANDS[command] : USAGE
  if (own.includes('--version')) return versionLine()
  return undefined
}
