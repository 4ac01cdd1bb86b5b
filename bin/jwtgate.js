#!/usr/bin/env node
// The `jwtgate` command: the compiled dist/, from a checkout as in the image (`npm ci` builds it,
// through `prepare`; after editing src/, `npm run build`). Written for any Node: on a line it does
// not support, it says so in one line instead of failing somewhere inside.
import { existsSync } from 'node:fs'

// package.json "engines": 24.11 or later on the 24 line, or 26 and later.
const version = process.versions.node.split('.').map(Number)
if (!((version[0] === 24 && version[1] >= 11) || version[0] >= 26)) {
  process.stderr.write('jwtgate: needs Node.js 24.11 or later on the 24 line, or 26 or later; this is ' + process.version + ' (' + process.execPath + ')\n')
  process.exit(1)
}
const main = new URL('../dist/cli/main.js', import.meta.url)
if (!existsSync(main)) {
  process.stderr.write('jwtgate: dist/ is not built; run `npm run build` (`npm ci` runs it too)\n')
  process.exit(1)
}
await import(main.href)
