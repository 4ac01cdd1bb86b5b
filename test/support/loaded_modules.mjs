// `node --import THIS`: records every module the process loads, ES or CommonJS (module.registerHooks
// sees both), and writes their URLs, one a line, to $LOADED_MODULES_FILE when the process exits.
// Plain JavaScript: it runs in the compiled command's process, which has no tsx.
import { writeFileSync } from 'node:fs'
import { registerHooks } from 'node:module'

const loaded = new Set()
registerHooks({
  load(url, context, next) {
    loaded.add(url)
    return next(url, context)
  },
})
process.on('exit', () => writeFileSync(process.env.LOADED_MODULES_FILE, [...loaded].join('\n')))
