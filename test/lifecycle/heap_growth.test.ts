// `jwtgate serve` fixes V8's heap growing factor (src/lifecycle/heap_growth.ts) unless node's
// command line chose one. What the factor does to memory is measured by `npm run bench` (RSS after
// the runs) and recorded in docs/design.md; here, that the process sets it and when it does not.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { HEAP_GROWING_PERCENT, limitHeapGrowth } from '../../src/lifecycle/heap_growth.js'

t.test('a factor on the command line is left alone, in either spelling', async (t) => {
  t.equal(limitHeapGrowth(['--max-semi-space-size=8', '--heap-growing-percent=20']), false)
  t.equal(limitHeapGrowth(['--heap_growing_percent=20']), false)
  t.equal(limitHeapGrowth(['--max-semi-space-size=8']), true)
  t.equal(HEAP_GROWING_PERCENT, 100)
})

t.test('V8 takes the flag after start (Node does not freeze its flags)', async (t) => {
  // A flag V8 refuses to take after start would print a warning or abort the process.
  const module = fileURLToPath(new URL('../../dist/lifecycle/heap_growth.js', import.meta.url))
  const out = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', `const m = await import(${JSON.stringify(module)}); console.log(m.limitHeapGrowth([]))`],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  t.equal(out.trim(), 'true')
})
