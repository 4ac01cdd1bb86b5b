// A reload of a large policy (issue 16 item 9): its YAML is read in a worker thread and its
// compile gives the event loop a turn every few milliseconds, so requests keep being answered.
// Bounded by counts and by ratios of the reload's own duration, never by a wall-clock time.
import { writeFileSync } from 'node:fs'
import t from 'tap'
import { startGateway } from '../../src/server.js'
import { LogCapture, tempFile, upstream } from '../support/harness.js'

/** `n` routes, one line each: about 45 bytes a route, so 3,000 routes are well above the 64 KiB read on the main thread. */
function policyText(url: string, n: number, prefix: string, extra = ''): string {
  const routes = Array.from({ length: n }, (_, i) => `  - { path: "/${prefix}${i}/**", upstream: up, auth: none }`)
  return `version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nupstreams: { up: { url: "${url}" } }\nroutes:\n${routes.join('\n')}\n${extra}`
}

t.test('a reload of 3,000 routes never holds the event loop for long', async (t) => {
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policyText(up.url, 3000, 'a'))
  const gw = await startGateway({ policyFile: file, logDestination: new LogCapture(), listen: { host: '127.0.0.1', port: 0 }, admin: false })
  t.teardown(() => gw.close())
  writeFileSync(file, policyText(up.url, 3000, 'b'))

  // The event loop's turns while the reload runs, and the longest time between two of them.
  let turns = 0
  let longestGap = 0
  let last = performance.now()
  let reloading = true
  const turn = () => {
    const now = performance.now()
    longestGap = Math.max(longestGap, now - last)
    last = now
    turns++
    if (reloading) setTimeout(turn, 1)
  }
  const started = performance.now()
  setTimeout(turn, 1)
  t.equal(await gw.reload(), true)
  reloading = false
  const took = performance.now() - started
  t.equal((await fetch(`${gw.url}/b2999/x`)).status, 200, 'the reloaded policy serves')
  t.ok(turns >= 20, `the event loop turned ${turns} times during the reload`)
  // On the main thread alone, parsing the YAML would be one block of most of the reload.
  t.ok(longestGap < took / 4, `the longest block (${longestGap.toFixed(0)} ms) is a small part of the reload (${took.toFixed(0)} ms)`)
})

t.test('a large policy refused on reload: every problem at its line and column, the old policy kept', async (t) => {
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policyText(up.url, 3000, 'a'))
  const logs = new LogCapture()
  const gw = await startGateway({ policyFile: file, logDestination: logs, listen: { host: '127.0.0.1', port: 0 }, admin: false })
  t.teardown(() => gw.close())
  const problems = () => logs.lines.filter((l) => l.msg === 'policy reload rejected').map((l) => String(l.problem))

  // Found by the worker (the schema): line 4 + 2001 holds route 2000.
  writeFileSync(file, policyText(up.url, 3000, 'b').replace('"/b2000/**", upstream: up', '"/b2000/**", upstream: up, colour: red'))
  t.equal(await gw.reload(), false)
  t.match(problems(), [new RegExp(`^${file}:2005:\\d+ .*colour`)], 'a schema problem, placed by the worker')

  // Found by the compile on the main thread, placed by the worker afterwards.
  const before = problems().length
  writeFileSync(file, policyText(up.url, 3000, 'c').replace('"/c1234/**", upstream: up', '"/c1234/**", upstream: nowhere'))
  t.equal(await gw.reload(), false)
  const compileProblems = problems().slice(before)
  t.equal(compileProblems.length, 1)
  t.match(compileProblems[0], new RegExp(`^${file}:1239:\\d+ unknown upstream "nowhere"`), 'a compile problem, placed at its route')
  t.equal((await fetch(`${gw.url}/a1/x`)).status, 200, 'the loaded policy still serves')
  t.equal((await fetch(`${gw.url}/c1/x`)).status, 404)
})
