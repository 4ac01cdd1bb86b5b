// Reloads are coalesced: a file change and a SIGHUP within the watcher's settle window reload
// once; reloads asked while one runs give at most one more after it.
import { writeFileSync } from 'node:fs'
import t from 'tap'
import { startGateway } from '../../src/server.js'
import { eventually, LogCapture, sleep, tempFile, upstream } from '../support/harness.js'

const policyText = (url: string, path: string) => `
version: 1
listen: { host: 127.0.0.1, port: 0 }
upstreams: { up: { url: "${url}" } }
routes:
  - { path: ${path}, upstream: up, auth: none }
`

async function reloadsCounted(gw: { metrics: { registry: { getSingleMetricAsString(name: string): Promise<string> } } }): Promise<number> {
  const text = await gw.metrics.registry.getSingleMetricAsString('jwtgate_policy_reloads_total')
  let n = 0
  for (const m of text.matchAll(/^jwtgate_policy_reloads_total\{[^}]*\} (\d+)/gm)) n += Number(m[1])
  return n
}

t.test('a file change and a SIGHUP-style reload within the settle window reload once', async (t) => {
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policyText(up.url, '/a/**'))
  const gw = await startGateway({
    policyFile: file,
    logDestination: new LogCapture(),
    listen: { host: '127.0.0.1', port: 0 },
    admin: false,
    watch: true,
  })
  t.teardown(() => gw.close())
  // The file changes, and the operator sends SIGHUP at once (reload() is what SIGHUP calls).
  writeFileSync(file, policyText(up.url, '/b/**'))
  t.equal(await gw.reload(), true)
  // The watcher's settle window (200 ms) ends after the reload read the new file.
  await sleep(700)
  t.equal(await reloadsCounted(gw), 1, 'one reload, not two')
  t.equal((await fetch(`${gw.url}/b/x`)).status, 200, 'the new policy is served')

  // A later change alone still reloads, once.
  writeFileSync(file, policyText(up.url, '/c/**'))
  await eventually('the watcher reloads', 10_000, async () => (await reloadsCounted(gw)) >= 2)
  await sleep(300)
  t.equal(await reloadsCounted(gw), 2)
  t.equal((await fetch(`${gw.url}/c/x`)).status, 200)
})

t.test('reloads asked while one runs: at most one more after it', async (t) => {
  const up = await upstream(t)
  const file = tempFile('policy.yaml', policyText(up.url, '/a/**'))
  const gw = await startGateway({ policyFile: file, logDestination: new LogCapture(), listen: { host: '127.0.0.1', port: 0 }, admin: false })
  t.teardown(() => gw.close())
  const results = await Promise.all(Array.from({ length: 10 }, () => gw.reload()))
  t.same(results, Array(10).fill(true), 'every caller gets a result')
  t.equal(await reloadsCounted(gw), 1, 'ten asked together, the file unchanged: the one running')

  // The file changes while a reload runs: one more reload, however many ask, reads it.
  const first = gw.reload()
  writeFileSync(file, policyText(up.url, '/d/**'))
  const more = await Promise.all([first, ...Array.from({ length: 5 }, () => gw.reload())])
  t.same(more, Array(6).fill(true))
  t.equal(await reloadsCounted(gw), 3, 'the one running and one after it')
  t.equal((await fetch(`${gw.url}/d/x`)).status, 200, 'the last reload read the change')
})
