// The file backend: a list on disk, followed as it changes; `jwtgate revoke` appends to it.
import t from 'tap'
import { jwtgate as cli } from '../support/cli.js'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parse } from 'yaml'
import { API_ROUTE, eventually, gateway, get, issuer, policy, tempFile, upstream } from '../support/harness.js'
import { freePort } from './redis_server.js'
import { ADMIN_ENV, revocationPolicy, revoke, stats, status, token } from './support.js'

function listFile(text?: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'jwtgate-revoked-')), 'revoked.yaml')
  if (text !== undefined) writeFileSync(file, text)
  return file
}

const fileFields = (file: string, more = '') => `  backend: file\n  file: { path: "${file}" }\n${more}`

t.test('the list is read at start and followed as the file changes', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const first = token(idp)
  const second = token(idp)
  const exp = Math.floor(Date.now() / 1000) + 300
  const file = listFile(`- { jti: "${first.jti}", exp: ${exp} }\n`)
  const gw = await gateway(t, revocationPolicy(idp, up, fileFields(file)), ADMIN_ENV)
  t.equal(await status(`${gw.url}/api/x`, first.token), 401, 'read at start')
  t.equal(await status(`${gw.url}/api/x`, second.token), 200)

  writeFileSync(file, `[{"jti": "${second.jti}"}, {"sub": "mallory"}]\n`)
  await eventually('a change applies (polled every 250 ms)', 10_000, async () => (await status(`${gw.url}/api/x`, second.token)) === 401)
  t.equal(await status(`${gw.url}/api/x`, first.token), 200, 'the file is the whole truth: an entry removed is no longer revoked')
  t.equal(await status(`${gw.url}/api/x`, token(idp, { sub: 'mallory' }).token), 401, 'a sub without before: every token of the subject')
  t.match(await stats(gw.adminUrl!), { backend: 'file', state: 'synced', jti: 1, subjects: 1 })
})

t.test('a bad file keeps the last good list (serve_stale) or refuses every token (fail_closed)', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const revoked = token(idp)
  const good = token(idp)
  const text = `- { jti: "${revoked.jti}" }\n`
  const staleFile = listFile(text)
  const closedFile = listFile(text)
  const stale = await gateway(t, revocationPolicy(idp, up, fileFields(staleFile)), ADMIN_ENV)
  const closed = await gateway(t, revocationPolicy(idp, up, fileFields(closedFile, '  on_backend_unavailable: fail_closed')), ADMIN_ENV)
  for (const f of [staleFile, closedFile]) writeFileSync(f, '- { jti: 12 }\n')
  await eventually('the stale file is noticed', 10_000, async () => (await stats(stale.adminUrl!)).state === 'stale')
  t.match(await stats(stale.adminUrl!), { last_error: /entry 1: needs a non-empty jti or sub/ })
  t.equal(await status(`${stale.url}/api/x`, revoked.token), 401, 'the last good list still applies')
  t.equal(await status(`${stale.url}/api/x`, good.token), 200)
  t.match((await get(`${stale.adminUrl}/readyz`)).json, { status: 'ready', degraded: [/revocation backend unavailable/] })

  await eventually('the fail-closed gateway notices the stale file', 10_000, async () => (await stats(closed.adminUrl!)).state === 'stale')
  t.equal(await status(`${closed.url}/api/x`, good.token), 503)
  t.equal((await get(`${closed.adminUrl}/readyz`)).status, 503)

  for (const f of [staleFile, closedFile]) writeFileSync(f, text)
  for (const g of [stale, closed]) {
    await eventually('a good file again: back to synced', 10_000, async () => (await stats(g.adminUrl!)).state === 'synced')
    t.equal(await status(`${g.url}/api/x`, good.token), 200)
    t.same((await get(`${g.adminUrl}/readyz`)).json, { status: 'ready' })
  }
})

t.test('POST /revocations and jwtgate revoke append to the file; expired entries are dropped', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const past = Math.floor(Date.now() / 1000) - 3600
  const file = listFile(`- { jti: "long-gone", exp: ${past} }\n`)
  const yaml = revocationPolicy(idp, up, fileFields(file))
  const gw = await gateway(t, yaml, ADMIN_ENV)
  const viaApi = token(idp)
  t.equal((await revoke(gw.adminUrl!, { jti: viaApi.jti })).status, 201)
  t.equal(await status(`${gw.url}/api/x`, viaApi.token), 401)

  const viaCli = token(idp, { sub: 'zoe' })
  const policyFile = tempFile('policy.yaml', yaml)
  const out = await cli(['revoke', '-c', policyFile, '--sub', 'zoe', '--before', String(Math.floor(Date.now() / 1000) + 1)], ADMIN_ENV)
  t.equal(out.code, 0, out.stderr)
  t.match(JSON.parse(out.stdout), { revoked: 'sub', sub: 'zoe' })
  await eventually('the running gateway picks it up', 10_000, async () => (await status(`${gw.url}/api/x`, viaCli.token)) === 401)

  const entries = parse(readFileSync(file, 'utf8')) as Array<Record<string, unknown>>
  t.match(entries, [
    { jti: viaApi.jti, exp: Number },
    { sub: 'zoe', before: Number },
  ])
  t.equal(entries.length, 2, 'the expired entry was dropped')
})

t.test('a missing file is an empty list', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = listFile()
  const gw = await gateway(t, revocationPolicy(idp, up, fileFields(file)), ADMIN_ENV)
  const tok = token(idp)
  t.equal(await status(`${gw.url}/api/x`, tok.token), 200)
  t.match(await stats(gw.adminUrl!), { state: 'synced', jti: 0 })
  t.equal((await revoke(gw.adminUrl!, { jti: tok.jti })).status, 201, 'the first revocation creates it')
  t.match(readFileSync(file, 'utf8'), tok.jti)
})

t.test('jwtgate revoke: usage and backends it cannot reach', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const memory = tempFile('policy.yaml', revocationPolicy(idp, up, '  backend: memory'))
  const plain = tempFile('policy.yaml', policy({ issuer: idp, upstream: up, routes: API_ROUTE }))
  const unreachable = tempFile(
    'policy.yaml',
    revocationPolicy(idp, up, `  backend: redis\n  redis: { url: "redis://127.0.0.1:${await freePort()}", timeout: 200ms }`),
  )
  // Each run of the command costs a couple of seconds of start-up: run them side by side.
  const [inMemory, none, down, bad] = await Promise.all([
    cli(['revoke', '-c', memory, '--jti', 'a'], ADMIN_ENV),
    cli(['revoke', '-c', plain, '--jti', 'a']),
    cli(['revoke', '-c', unreachable, '--sub', 'a'], ADMIN_ENV),
    cli(['revoke', '-c', memory, '--sub', 'a', '--exp', '5'], ADMIN_ENV),
  ])
  t.equal(inMemory.code, 1)
  t.match(inMemory.stderr, /memory backend lives inside the gateway process; revoke with POST \/revocations/)
  t.equal(none.code, 1)
  t.match(none.stderr, /has no revocation: section/)
  t.equal(down.code, 1)
  t.match(down.stderr, /the revocation was not stored: .*(ECONNREFUSED|writeable)/)
  t.equal(bad.code, 2, 'a usage error')
  t.match(bad.stderr, /^jwtgate: --exp goes with --jti; a --sub revocation takes --before; see jwtgate revoke --help\n$/, 'one line')
})

t.test('large lists: JSON and the one-entry-per-line form are read as JSON, any other YAML still works', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const revoked = token(idp, { sub: 'bob' })
  const fine = token(idp)
  const exp = Math.floor(Date.now() / 1000) + 300
  const many = Array.from({ length: 50_000 }, (_, i) => ({ jti: `other-${i}`, exp }))
  const file = listFile(JSON.stringify([...many, { jti: revoked.jti, exp }]))
  const gw = await gateway(t, revocationPolicy(idp, up, fileFields(file)), ADMIN_ENV)
  t.equal(await status(`${gw.url}/api/x`, revoked.token), 401, 'the last of 50,001 JSON entries')
  t.equal(await status(`${gw.url}/api/x`, fine.token), 200)
  t.match(await stats(gw.adminUrl!), { jti: 50_001 })

  // The form `jwtgate revoke` writes, with a comment, then one line of plain YAML among them.
  const lines = `# list\n${many
    .slice(0, 1000)
    .map((e) => `- ${JSON.stringify(e)}\n`)
    .join('')}- ${JSON.stringify({ jti: fine.jti, exp })}\n`
  writeFileSync(file, lines)
  await eventually('JSON lines', 10_000, async () => (await status(`${gw.url}/api/x`, fine.token)) === 401)
  t.equal(await status(`${gw.url}/api/x`, revoked.token), 200)
  writeFileSync(file, `${lines}- { sub: bob }\n`)
  await eventually('a YAML line: the whole file is read as YAML', 10_000, async () => (await status(`${gw.url}/api/x`, revoked.token)) === 401)
  t.match(await stats(gw.adminUrl!), { jti: 1001, subjects: 1 })
})

t.test('file entries scoped to one issuer with iss; without iss (or iss: "*") for every issuer', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const a = token(idp, { sub: 'ian' })
  const b = token(idp, { sub: 'jo' })
  const c = token(idp, { sub: 'kim' })
  const file = listFile(
    `- { sub: ian, iss: "https://another-idp.example.com/" }\n- { sub: jo, iss: "${idp.url}" }\n- { sub: kim, iss: "*" }\n- { jti: x, iss: 5 }\n`,
  )
  const gw = await gateway(t, revocationPolicy(idp, up, fileFields(file)), ADMIN_ENV)
  t.match(await stats(gw.adminUrl!), { state: 'loading', last_error: /entry 4: iss must be the tokens' issuer/ }, 'a bad iss is a bad file')
  writeFileSync(file, readFileSync(file, 'utf8').replace('- { jti: x, iss: 5 }\n', ''))
  await eventually('the good file loads', 10_000, async () => (await stats(gw.adminUrl!)).state === 'synced')
  t.equal(await status(`${gw.url}/api/x`, a.token), 200, "another issuer's ian")
  t.equal(await status(`${gw.url}/api/x`, b.token), 401, "this issuer's jo")
  t.equal(await status(`${gw.url}/api/x`, c.token), 401, 'every issuer')
  t.equal((await revoke(gw.adminUrl!, { jti: 'y', iss: idp.url })).status, 201)
  t.match(readFileSync(file, 'utf8'), `{"jti":"y","exp":`, 'appended')
  t.match(readFileSync(file, 'utf8'), `"iss":"${idp.url}"}`, 'with its issuer')
})
