// tap's `before` script (package.json): compiles src/ to dist/ once per test run, for the tests
// that start `jwtgate` as a child process (test/support/cli.ts). Emit only (--noCheck): `npm test`
// type-checks the whole project before tap starts, so checking again here would only cost time.
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
// From scratch: a module moved or deleted in src/ must not live on in dist/.
rmSync(new URL('../../dist', import.meta.url), { recursive: true, force: true })
const res = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--noCheck'], { cwd: ROOT, stdio: 'inherit' })
process.exitCode = res.status ?? 1
