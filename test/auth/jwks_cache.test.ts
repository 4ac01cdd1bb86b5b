// The key set cache's state machine, in-process against a real IdP on 127.0.0.1: one fetch
// shared by everyone waiting, the cool-down, the background refresh and its clamps, the last
// good keys kept through every kind of failure, and stop(). test/e2e/jwks.test.ts shows the
// same through the gateway; here each transition is checked on the cache itself.
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { JwksCache, type JwksSettings } from '../../src/auth/jwks_cache.js'
import { generateDevKey } from '../../src/devkit/dev_issuer.js'
import { createLogger } from '../../src/log.js'
import { LogCapture } from '../support/harness.js'
import { eventually, sleep } from '../support/harness.js'

interface Idp {
  url: string
  /** Requests to the key set URL. */
  fetches: number
  /** Paths requested, in order. */
  paths: string[]
  keys: Array<Record<string, unknown>>
  cacheControl: string | undefined
  /** Replaces the usual answer (the key set) while set. */
  answer: ((res: ServerResponse) => void) | undefined
  /** While set, every answer waits for it. */
  hold: Promise<void> | undefined
}

async function idp(t: { teardown(fn: () => unknown): void }, keys: Array<Record<string, unknown>>): Promise<Idp> {
  const state: Idp = { url: '', fetches: 0, paths: [], keys, cacheControl: undefined, answer: undefined, hold: undefined }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    state.paths.push(req.url ?? '')
    if (req.url !== '/jwks.json') return void res.writeHead(404).end()
    state.fetches++
    void (state.hold ?? Promise.resolve()).then(() => {
      if (state.answer) return state.answer(res)
      res.writeHead(200, { 'content-type': 'application/json', ...(state.cacheControl ? { 'cache-control': state.cacheControl } : {}) })
      res.end(JSON.stringify({ keys: state.keys }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return state
}

function cache(t: { teardown(fn: () => unknown): void }, at: Idp, settings: Partial<JwksSettings> = {}, log = createLogger('silent')): JwksCache {
  const c = new JwksCache(
    { uri: `${at.url}/jwks.json`, timeoutMs: 1000, cooldownMs: 10_000, minAgeMs: 60_000, maxAgeMs: 3_600_000, ...settings },
    new Set(['ES256']),
    { issuer: 'https://idp.test/', clockSkewMs: 0, requireExp: true },
    log,
  )
  t.teardown(() => c.stop())
  return c
}

const key = (kid: string) => generateDevKey({ alg: 'ES256', kid }).publicJwk

t.test('everyone waiting shares one fetch; the cool-down then refuses another', async (t) => {
  const at = await idp(t, [key('a')])
  const c = cache(t, at, { cooldownMs: 600 })
  let release!: () => void
  at.hold = new Promise((resolve) => {
    release = resolve
  })
  const first = c.start()
  const waiting = [c.refetchForUnknownKid(), c.refetchForUnknownKid()]
  t.ok(
    waiting.every((p) => p === first),
    'an unknown kid during the first fetch waits for that fetch',
  )
  release()
  await first
  t.equal(at.fetches, 1)
  t.ok(c.find('a', 'ES256'), 'the key is there for them all')

  t.equal(c.refetchForUnknownKid(), undefined, 'within the cool-down: no fetch, the kid is just unknown')
  t.equal(at.fetches, 1)
  await sleep(650)
  at.keys.push(key('b'))
  const again = c.refetchForUnknownKid()
  t.ok(again, 'once the cool-down has passed, an unknown kid fetches again')
  t.equal(c.refetchForUnknownKid(), again, 'and the next unknown kid waits for that same fetch')
  await again
  t.equal(at.fetches, 2)
  t.ok(c.find('b', 'ES256'), 'the rotated key is found')
  t.equal(c.refetchForUnknownKid(), undefined, 'a new cool-down starts with that fetch')
})

t.test('the background refresh follows Cache-Control max-age, clamped to min_age and max_age', async (t) => {
  const at = await idp(t, [key('a')])
  at.cacheControl = 'max-age=0'
  const short = cache(t, at, { minAgeMs: 400 })
  await short.start()
  t.equal(at.fetches, 1)
  await sleep(100)
  t.equal(at.fetches, 1, 'max-age=0 is raised to min_age: no refresh before it')
  await eventually('refreshed once min_age has passed', 2000, () => at.fetches >= 2)

  const other = await idp(t, [key('c')])
  other.cacheControl = 'public, max-age=86400'
  const long = cache(t, other, { minAgeMs: 50, maxAgeMs: 200 })
  await long.start()
  await eventually('a day of max-age is cut to max_age (refreshed at 80% of it)', 2000, () => other.fetches >= 2)
})

t.test('the key set loaded line says when the refresh happens (80% of the lifetime), and the lifetime', async (t) => {
  const at = await idp(t, [key('a')])
  at.cacheControl = 'max-age=1000'
  const logs = new LogCapture()
  const c = cache(t, at, { minAgeMs: 50 }, createLogger('info', logs))
  await c.start()
  t.match(
    logs.lines.find((l) => l.msg === 'key set loaded'),
    { refresh_in_ms: 800_000, lifetime_ms: 1_000_000 },
  )
})

t.test('a refresh keeps the prepared key of an unchanged JWK and drops a removed one', async (t) => {
  const at = await idp(t, [key('a'), key('b')])
  const c = cache(t, at, { cooldownMs: 0 })
  await c.start()
  const a = c.find('a', 'ES256')!
  const b = c.find('b', 'ES256')!
  at.keys.splice(1, 1)
  await c.refetchForUnknownKid()
  t.equal(c.find('a', 'ES256'), a, 'the same verifier, so the tokens cached under it stay cached')
  t.ok(c.holds(a))
  t.notOk(c.holds(b), 'the removed key no longer verifies, even for a token that found it before')
  t.equal(c.find('b', 'ES256'), undefined)
  t.equal(c.status.keyCount, 1)
})

t.test('without kid, a key is found only when exactly one could verify the alg', async (t) => {
  const at = await idp(t, [key('a')])
  const c = cache(t, at, { cooldownMs: 0 })
  await c.start()
  t.equal(c.find(undefined, 'ES256'), c.find('a', 'ES256'))
  t.equal(c.find(undefined, 'RS256'), undefined, 'no key for that alg')
  at.keys.push(key('b'))
  await c.refetchForUnknownKid()
  t.equal(c.find(undefined, 'ES256'), undefined, 'two could: never a guess')
})

t.test('the last good keys are kept whatever the failure, and the status says what went wrong', async (t) => {
  const at = await idp(t, [key('a')])
  const c = cache(t, at, { cooldownMs: 0, timeoutMs: 200 })
  await c.start()
  const good = c.find('a', 'ES256')!
  const loadedAt = c.status.lastSuccessAt
  const json = (body: string) => (res: ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end(body)
  const failures: Array<[string, (res: ServerResponse) => void, string | RegExp]> = [
    ['a 500', (res) => res.writeHead(500).end('oops'), 'HTTP 500'],
    ['HTML', json('<html>oops</html>'), 'response is not JSON'],
    ['no keys array', json('{"keys": {}}'), 'response has no "keys" array'],
    ['an empty set', json('{"keys": []}'), 'no usable signing key in the key set'],
    [
      'only unusable keys',
      json(
        JSON.stringify({
          keys: [
            { kty: 'oct', k: 'c2VjcmV0' },
            { ...key('enc'), use: 'enc' },
          ],
        }),
      ),
      'no usable signing key in the key set',
    ],
    ['more than 1 MiB', json(JSON.stringify({ keys: [key('a')], padding: 'x'.repeat(1024 * 1024) })), 'response larger than 1048576 bytes'],
    ['a redirect', (res) => res.writeHead(302, { location: `${at.url}/elsewhere.json` }).end(), 'HTTP 302'],
    ['no answer in time', (res) => void setTimeout(() => json(JSON.stringify({ keys: [] }))(res), 600), 'timed out'],
  ]
  for (const [what, answer, error] of failures) {
    at.answer = answer
    const fetches = at.fetches
    await c.refetchForUnknownKid()
    t.equal(at.fetches, fetches + 1, `${what}: fetched`)
    t.equal(c.find('a', 'ES256'), good, `${what}: the last good key still verifies`)
    t.ok(c.holds(good))
    t.match(c.status, { keyCount: 1, lastError: error, lastSuccessAt: loadedAt }, `${what}: the status says so`)
    t.ok(c.status.lastFailureAt! >= c.status.lastSuccessAt!)
  }
  t.notOk(at.paths.includes('/elsewhere.json'), 'the redirect was not followed')
  at.answer = undefined
  await c.refetchForUnknownKid()
  t.ok(c.status.lastSuccessAt! > loadedAt!, 'a good answer again is loaded')
})

t.test('stop() ends the background refresh and the retries, and may be called again', async (t) => {
  const at = await idp(t, [key('a')])
  at.cacheControl = 'max-age=0'
  const c = cache(t, at, { minAgeMs: 50 })
  await c.start()
  c.stop()
  c.stop()
  const fetches = at.fetches
  await sleep(200)
  t.equal(at.fetches, fetches, 'no refresh after stop')

  const down = await idp(t, [key('a')])
  down.answer = (res) => res.writeHead(503).end()
  const failing = cache(t, down, { cooldownMs: 0 })
  await failing.start()
  t.notOk(failing.hasKeys)
  failing.stop()
  await sleep(700)
  t.equal(down.fetches, 1, 'no retry after stop (the first comes after 500 ms)')
})

t.test('an unknown kid within the cool-down: not known yet, and the fetch is due when the cool-down ends', async (t) => {
  const at = await idp(t, [key('a')])
  const c = cache(t, at, { cooldownMs: 300 })
  await c.start()
  t.equal(at.fetches, 1)
  at.keys.push(key('b'))
  const early = c.lookup('b', 'ES256')
  t.notOk(early instanceof Promise, 'no fetch within the cool-down: answered at once')
  t.match(early, { retryInMs: Number }, 'not "unknown": the IdP may have published it since')
  t.ok((early as { retryInMs: number }).retryInMs <= 300)
  t.equal(at.fetches, 1)
  await eventually('the fetch due at the end of the cool-down ran with no request asking', 2000, () => at.fetches === 2)
  await eventually('loaded', 1000, () => c.status.keyCount === 2)
  t.equal(c.lookup('b', 'ES256'), c.find('b', 'ES256'), 'the new key is found')
  t.ok(c.find('b', 'ES256'))
})

t.test('a kid the fetch made after its first sight lacks is absent; one seen later waits for the next fetch', async (t) => {
  const at = await idp(t, [key('a')])
  const c = cache(t, at, { cooldownMs: 300, minAgeMs: 60_000 })
  await c.start()
  t.match(c.lookup('x', 'ES256'), { retryInMs: Number }, 'first sight within the cool-down')
  await eventually('the due fetch ran', 2000, () => at.fetches === 2 && c.status.lastSuccessAt !== undefined)
  await sleep(20)
  t.same(c.lookup('x', 'ES256'), { absent: true }, 'checked by a fetch made after it was first seen: unknown')
  t.match(c.lookup('y', 'ES256'), { retryInMs: Number }, 'another kid is not known yet')
  t.same(c.lookup(undefined, 'ES256'), c.find('a', 'ES256'), 'no kid and one key: that key')
  t.same(c.lookup('a', 'RS256'), { absent: true }, 'a kid the keys have for another alg: no fetch would change it')
  await eventually('the next cool-down ends with one fetch for y', 2000, () => at.fetches === 3)
  await sleep(20)
  t.same(c.lookup('y', 'ES256'), { absent: true })
  t.same(c.lookup('x', 'ES256'), { absent: true }, 'x stays absent: the last fetch answered for it again')
  at.answer = (res) => res.writeHead(503).end()
  await (c as unknown as { fetchNow(): Promise<void> }).fetchNow()
  t.match(c.lookup('x', 'ES256'), { retryInMs: Number }, 'once a fetch failed, nothing is known of it: 503, not 401')
})

t.test('after the cool-down an unknown kid fetches at once, and is absent when the fetch lacks it', async (t) => {
  const at = await idp(t, [key('a')])
  const c = cache(t, at, { cooldownMs: 100 })
  await c.start()
  await sleep(150)
  const waiting = c.lookup('x', 'ES256')
  t.ok(waiting instanceof Promise, 'fetches now')
  t.same(await waiting, { absent: true })
  t.equal(at.fetches, 2)
})

t.test('the IdP down: an unknown kid is not known yet until a fetch succeeds, and the back-off retry answers for it', async (t) => {
  const at = await idp(t, [key('a')])
  const c = cache(t, at, { cooldownMs: 5000 })
  await c.start()
  at.answer = (res) => res.writeHead(503).end()
  // Far in the cool-down: forced, as a routine refresh would.
  await (c as unknown as { fetchNow(): Promise<void> }).fetchNow()
  t.equal(at.fetches, 2)
  at.keys.push(key('b'))
  const down = c.lookup('b', 'ES256')
  t.match(down, { retryInMs: Number }, 'not unknown while the IdP is down')
  t.ok((down as { retryInMs: number }).retryInMs <= 500, 'the back-off retry (500 ms) comes before the cool-down ends')
  at.answer = undefined
  await eventually('the back-off retry loaded the keys', 2000, () => c.status.keyCount === 2)
  t.ok(c.lookup('b', 'ES256'), 'found as soon as the IdP is back, with no 401 in between')
  t.equal(at.fetches, 3)
})

t.test('200 random kids within a short cool-down cost at most one fetch per cool-down', async (t) => {
  const at = await idp(t, [key('a')])
  const cooldownMs = 300
  const c = cache(t, at, { cooldownMs, minAgeMs: 60_000 })
  await c.start()
  const started = performance.now()
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => c.lookup(`random-${i}`, 'ES256')))
  t.ok(
    answers.every((a) => 'retryInMs' in a),
    'all not known yet',
  )
  await sleep(cooldownMs + 150)
  const more = await Promise.all(Array.from({ length: 200 }, (_, i) => c.lookup(`more-${i}`, 'ES256')))
  t.ok(more.every((a) => 'retryInMs' in a || 'absent' in a))
  await sleep(cooldownMs + 150)
  const periods = Math.floor((performance.now() - started) / cooldownMs)
  const fetches = at.fetches - 1
  t.ok(fetches >= 1 && fetches <= periods + 1, `400 random kids cost ${fetches} fetches over ${periods} cool-downs`)
  t.ok(fetches <= 3)
})

t.test('a kid a refresh dropped, or of an unusable entry, is unknown at once; a long kid is remembered by its hash', async (t) => {
  const at = await idp(t, [key('a'), key('b'), { ...key('enc'), use: 'enc' }])
  const c = cache(t, at, { cooldownMs: 300, minAgeMs: 60_000 })
  await c.start()
  t.same(c.lookup('enc', 'ES256'), { absent: true }, 'the set has it, unusable: no fetch would change that')
  at.keys.splice(1, 1)
  await (c as unknown as { fetchNow(): Promise<void> }).fetchNow()
  t.same(c.lookup('b', 'ES256'), { absent: true }, 'the refresh that dropped it answered for it')
  const long = 'k'.repeat(10 * 1024)
  t.match(c.lookup(long, 'ES256'), { retryInMs: Number })
  await eventually('the due fetch', 2000, () => at.fetches === 3)
  await sleep(20)
  t.same(c.lookup(long, 'ES256'), { absent: true })
})
