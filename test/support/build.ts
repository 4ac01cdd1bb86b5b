// tap's `before` script (package.json): the same build `npm ci` runs (`prepare`, scripts/build.js),
// once per test run, for the tests that start `jwtgate` as a child process (test/support/cli.ts)
// and for the tests of src/ that read the generated policy schema (#policy-schema).
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const script = fileURLToPath(new URL('../../scripts/build.js', import.meta.url))
const res = spawnSync(process.execPath, [script], { stdio: 'inherit' })
process.exitCode = res.status ?? 1
