#!/usr/bin/env node
// The `jwtgate` command. A source checkout runs the TypeScript through tsx, so
// `npm ci && npm run demo` needs no build step; the image ships only the compiled dist/.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const source = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api')
  register()
  await import(source)
} else {
  await import('../dist/cli/main.js')
}
