#!/usr/bin/env node
// The `jwtgate` command. A built package (npm run build) runs the compiled JavaScript; a source
// checkout runs the TypeScript through tsx, so `npm ci && npm run demo` needs no build step.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const built = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
if (existsSync(built)) {
  await import(built)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('../src/cli/main.ts')
}
