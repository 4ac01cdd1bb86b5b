// A gateway whose standard output fails (closed by the reader, a broken log agent) serves on,
// and counts the lines it could not write in jwtgate_log_lines_dropped_total.
import t from 'tap'
import { spawn } from 'node:child_process'
import { closeSync, openSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import path from 'node:path'
import { bearer, eventually, get, issuer, policy, tempFile, upstream } from '../support/harness.js'
import { childEnv, MAIN } from '../support/cli.js'

/** A port nothing listens on now (the gateway's output cannot tell us the one it chose). */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

t.test('a gateway whose standard output fails serves on and counts the lines it lost', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const [port, adminPort] = [await freePort(), await freePort()]
  const file = tempFile(
    'policy.yaml',
    policy({ issuer: idp, upstream: up, routes: '  - { path: /api/**, upstream: orders, auth: { issuers: [idp] } }' })
      .replace('listen: { host: 127.0.0.1, port: 0 }', `listen: { host: 127.0.0.1, port: ${port} }`)
      .replace(/^admin: .*$/m, `admin: { host: 127.0.0.1, port: ${adminPort} }`),
  )
  // Standard output opened read-only: every write to it fails (EBADF).
  const sink = path.join(path.dirname(file), 'stdout')
  writeFileSync(sink, '')
  const stdout = openSync(sink, 'r')
  t.teardown(() => closeSync(stdout))
  const child = spawn(process.execPath, [MAIN, 'serve', '-c', file], { env: childEnv(), stdio: ['ignore', stdout, 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d))
  t.teardown(() => child.kill('SIGKILL'))
  const url = `http://127.0.0.1:${port}`
  const admin = `http://127.0.0.1:${adminPort}`
  await eventually(
    () => `the gateway is ready; stderr: ${stderr}`,
    20_000,
    async () => {
      try {
        return (await fetch(`${admin}/readyz`)).status === 200
      } catch {
        return false // not listening yet
      }
    },
  )
  const token = idp.sign({ sub: 'alice', aud: 'orders-api' })
  for (let i = 0; i < 5; i++) t.equal((await get(`${url}/api/x`, bearer(token))).status, 200, 'served')
  t.equal((await get(`${url}/api/x`)).status, 401, 'denied')
  // Six access lines (and the start-up lines) lost; they are counted within the 100 ms batch window.
  let text = ''
  await eventually(
    () => `the lost lines counted: ${text}`,
    5000,
    async () => {
      text = await (await fetch(`${admin}/metrics`)).text()
      return Number(/^jwtgate_log_lines_dropped_total\{reason="write_error"\} (\d+)$/m.exec(text)?.[1] ?? 0) >= 6
    },
  )
  t.match(text, /^jwtgate_log_lines_dropped_total\{reason="output_full"\} 0$/m, 'none dropped for a full output')
  t.equal(child.exitCode, null, 'still running')
  t.equal(stderr, '', 'nothing on standard error')
})
