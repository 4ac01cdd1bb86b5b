// The status page in a real browser (Chromium, test/support/browser.ts), loaded from a running
// gateway right after real traffic: what a person sees, at 1280 px and at phone width, with the
// keyboard, under the page's own CSP. JWTGATE_SCREENSHOT=1 writes docs/status-page.png from the
// first test (commit it when the page changes on purpose); other runs leave the tree alone.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import type { Page } from 'playwright-core'
import { browser, browserTest } from '../support/browser.js'
import { jwtgate, servedCluster } from '../support/cli.js'
import { bearer, closedPort, gateway, get, issuer, policy, tempFile, upstream } from '../support/harness.js'

// The functions given to page.evaluate run in the browser, whose globals the project's types (no DOM lib) do not know.
declare const document: any
declare const window: any
declare const location: any

const SCREENSHOT = new URL('../../docs/status-page.png', import.meta.url)

const ROUTES = `  - { name: public, path: /public/**, upstream: orders, auth: none }
  - { name: admin, path: /admin/**, methods: [GET, POST], upstream: orders, auth: { issuers: [idp], claims: { roles: { contains: admin } } } }
  - { name: orders-api, path: /api/**, upstream: orders, auth: { issuers: [idp] } }
  - { name: reports, path: /reports/**, upstream: billing, auth: none }
  - { name: legacy, path: /legacy, upstream: orders, auth: { issuers: [idp], scopes: [legacy:read] }, mode: report }`

/** A gateway with an issuer, a working upstream and one that is down, and the traffic a person would ask about. */
async function trafficked(t: any, extraAdmin = '') {
  const idp = await issuer(t)
  const up = await upstream(t)
  const down = await closedPort()
  const yaml = policy({ issuer: idp, upstream: up, routes: ROUTES })
    .replace('admin: { host: 127.0.0.1, port: 0 }', `admin: { host: 127.0.0.1, port: 0${extraAdmin} }`)
    .replace('upstreams:\n', `upstreams:\n  billing: { url: "http://127.0.0.1:${down}", timeout: 2s }\n`)
  const gw = await gateway(t, yaml, { ADMIN_TOKEN: 'the-admin-token-for-the-page' })
  const good = idp.sign({ sub: 'u-ada-31', aud: 'orders-api', roles: ['user'] })
  const expired = idp.sign({ sub: 'u-bea-47', aud: 'orders-api' }, { expiresInSeconds: -120 })
  const forged = `${good.slice(0, good.lastIndexOf('.'))}.${'A'.repeat(342)}`
  const sent: Array<[string, Record<string, string>, number]> = [
    ['/public/index.html', {}, 200],
    ['/api/orders', bearer(good), 200],
    ['/api/orders/7', bearer(good), 200],
    ['/api/orders?page=2&access_token=in-the-query', {}, 401],
    ['/api/orders', bearer(expired), 401],
    ['/api/orders', bearer(forged), 401],
    ['/admin/users', bearer(good), 403],
    ['/reports/2026', {}, 502],
    ['/nowhere', {}, 404],
    ['/legacy', bearer(good), 200],
  ]
  for (const [path, headers, status] of sent) t.equal((await get(`${gw.url}${path}`, headers)).status, status, `${path} → ${status}`)
  return { idp, up, gw, yaml, tokens: [good, expired, forged], secrets: ['in-the-query', 'u-ada-31', 'u-bea-47'] }
}

/** The rows of a table as the text of their cells. */
function rows(page: Page, selector: string): Promise<string[][]> {
  return page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) => [...tr.children].map((c) => (c as any).innerText.replace(/\s+/g, ' ').trim())))
}

/** Console errors and CSP violations the page caused. */
function watchErrors(page: Page): string[] {
  const errors: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text())
  })
  page.on('pageerror', (e) => errors.push(e.message))
  return errors
}

browserTest(t, 'what a person sees after real traffic', async (t) => {
  const { gw, idp, tokens, secrets } = await trafficked(t)
  const context = await browser(t)
  const page = await context.newPage()
  const errors = watchErrors(page)
  await page.goto(gw.adminUrl!)
  t.equal(await page.title(), 'jwtgate status')
  t.ok(await page.isVisible('#pause'), 'the script ran under the CSP (it shows the pause button)')

  const routes = await rows(page, 'table.routes')
  t.same(
    routes.map((r) => r[1]!.split(' ')[0]),
    ['public', 'admin', 'orders-api', 'reports', 'legacy'],
    'routes in policy order',
  )
  const api = routes[2]!
  // #, route (methods, path, host), upstream, requires, mode, then the last 5 minutes: requests, allowed, denied, 5xx, p50, p99.
  t.match(api.slice(1, 5), ['orders-api any method /api/**', 'orders', /^a valid token from idp \(iss http/, 'enforce'])
  t.match(routes[1]![1], 'admin GET, POST /admin/**')
  t.same(api.slice(5, 7), ['5', '2'], 'orders-api: 5 requests, 2 allowed')
  t.match(api[7], /^3 missing_token 1/)
  t.match(api[7], /expired 1/)
  t.match(api[7], /bad_signature 1/)
  t.match(routes[1]![7], /insufficient_claims 1/)
  t.match(routes[3]!.slice(5, 9), ['1', '1', '0', '1'], 'reports: one request, allowed, its upstream down: one 5xx')
  t.match(routes[4]![4], 'report')
  t.match(routes[4]![7], /would deny: insufficient_claims 1/)
  t.match(routes[1]![3], /claim roles must contain "admin"/, "what the route requires, in explain's words")

  const refusals = await rows(page, '#refusals-list table')
  // Time, route, method, path, status, reason (code and words), issuer, request id.
  t.same(
    refusals.map((r) => [r[1], r[4], r[5]!.split(' ')[0]]),
    [
      ['none', '404', 'no_route'],
      ['reports', '502', 'upstream_unreachable'],
      ['admin', '403', 'insufficient_claims'],
      ['orders-api', '401', 'bad_signature'],
      ['orders-api', '401', 'expired'],
      ['orders-api', '401', 'missing_token'],
    ],
    'the refusals, newest first, with their reason codes',
  )
  t.match(refusals[4], [/UTC$/, 'orders-api', 'GET', '/api/orders', '401', 'expired the token has expired', 'idp', /^[0-9a-f-]{36}$/])
  t.equal(refusals[5]![3], '/api/orders', 'the path, never its query')
  const requestId = refusals[4]![7]!
  t.match(
    gw.logs.lines.find((l) => l.request_id === requestId),
    { reason: 'expired', status: 401 },
    'the refusal is found in the log by its request id',
  )
  const dom = await page.content()
  for (const token of tokens) t.notOk(dom.includes(token.slice(-40)), 'no token anywhere in the DOM')
  for (const secret of secrets) t.notOk(dom.includes(secret), `nor ${secret}`)

  const issuerText = await page.innerText('#issuers')
  t.match(issuerText, new RegExp(`key set ${idp.jwksUri.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`))
  t.match(issuerText, /Last fetch\s*ok .* UTC, \d+ ms, HTTP 200/)
  const keys = await rows(page, '#issuers table')
  t.match(keys[0], [idp.keys[0]!.kid, 'RSA', '—', 'RS256', 'RS256', /UTC$/], "the issuer's key: kid, kty, crv, alg, what it verifies, first seen")
  // Accepted: the two good requests to orders-api; the report route's would-be refusal counts as refused.
  t.match(issuerText, /Tokens\s*2 accepted; refused: (?=.*expired 1)(?=.*bad_signature 1)(?=.*insufficient_claims 2)/)
  t.match(await page.innerText('#upstreams'), /billing.*upstream_unreachable/s)
  t.match(await page.innerText('#overview'), /Readiness\s*ready/)

  // The filter by reason, without JavaScript's help: a form the server answers.
  await page.selectOption('select[name=reason]', 'expired')
  await Promise.all([page.waitForURL(/reason=expired/), page.click('form.filter button')])
  t.same(
    (await rows(page, '#refusals-list table')).map((r) => r[5]!.split(' ')[0]),
    ['expired'],
  )

  // The keyboard: the first Tab reaches the skip link, which leads to the routes.
  await page.goto(gw.adminUrl!)
  await page.keyboard.press('Tab')
  t.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to routes')
  await page.keyboard.press('Enter')
  t.equal(await page.evaluate(() => location.hash), '#routes')

  if (process.env.JWTGATE_SCREENSHOT === '1') {
    await page.goto(gw.adminUrl!)
    writeFileSync(SCREENSHOT, await page.screenshot({ fullPage: true }))
  }

  // Phone width: the page itself does not scroll sideways; wide tables scroll in their own region.
  const phone = await context.newPage()
  await phone.setViewportSize({ width: 390, height: 844 })
  await phone.goto(gw.adminUrl!)
  const widths = await phone.evaluate(() => {
    const region = document.querySelector('#routes .scroll') as any
    return { page: document.documentElement.scrollWidth, view: window.innerWidth, region: region.clientWidth, table: region.scrollWidth }
  })
  t.ok(widths.page <= widths.view, `no sideways scrolling of the page at 390 px (${widths.page} ≤ ${widths.view})`)
  t.ok(widths.table > widths.region, 'the routes table scrolls in its own region')
  t.ok(await phone.isVisible('#ask form'), 'the form is there at phone width')
  t.same(errors, [], 'no console error, no CSP violation')
})

browserTest(t, 'ask the policy: the same answer as jwtgate explain, typed with the keyboard', async (t) => {
  const { gw, yaml } = await trafficked(t)
  const file = tempFile('policy.yaml', yaml)
  const context = await browser(t)
  const page = await context.newPage()
  const errors = watchErrors(page)
  await page.goto(gw.adminUrl!)
  // Tab to the path field, as a keyboard user would.
  for (let i = 0; i < 300 && (await page.evaluate(() => (document.activeElement as any)?.name)) !== 'path'; i++) await page.keyboard.press('Tab')
  t.equal(await page.evaluate(() => (document.activeElement as any).name), 'path', 'the path field is reached with Tab')
  await page.keyboard.type('/public/../admin/users')
  await page.keyboard.press('Tab')
  await page.keyboard.type('{"sub":"alice","roles":["user"]}')
  await page.keyboard.press('Tab')
  await Promise.all([page.waitForURL(/\/ask\?/), page.keyboard.press('Enter')])
  const shown = await page.innerText('#explanation')
  const cli = await jwtgate(['explain', '-c', file, 'GET', '/public/../admin/users', '--claims', '{"sub":"alice","roles":["user"]}'])
  t.equal(cli.code, 1)
  t.equal(shown, cli.stdout, "the page shows jwtgate explain's answer, word for word")
  t.match(await page.innerText('#ask .answer strong'), 'DENY 403 insufficient_claims')
  t.same(errors, [])
})

browserTest(t, 'the page follows a reload without being reloaded, and shows a failed reload with its problems', async (t) => {
  const { gw, yaml } = await trafficked(t)
  const context = await browser(t)
  const page = await context.newPage()
  const errors = watchErrors(page)
  await page.goto(gw.adminUrl!)
  const before = gw.gateway.policy.hash
  t.match(await page.innerText('#overview'), /none since the start/)

  writeFileSync(gw.gateway.policy.file, yaml.replace('routes:\n', 'routes:\n  - { name: status-new, path: /new/**, upstream: orders, auth: none }\n'))
  t.equal(await gw.reload(), true)
  t.not(gw.gateway.policy.hash, before)
  // The script fetches the page every 5 s: the new route and hash appear in place.
  await page.waitForFunction((hash) => document.querySelector('#overview')!.textContent!.includes(hash.slice(0, 12)), gw.gateway.policy.hash, {
    timeout: 30_000,
  })
  t.same((await rows(page, 'table.routes'))[0]!.slice(1, 2), ['status-new never matched any method /new/**'])
  t.match(await page.innerText('#overview'), /Last reload\s*succeeded/)

  writeFileSync(gw.gateway.policy.file, yaml.replace('upstream: billing', 'upstream: nowhere'))
  t.equal(await gw.reload(), false)
  await page.waitForSelector('#overview .problems code', { timeout: 30_000 })
  t.match(await page.innerText('#overview'), /failed: the loaded policy was kept/)
  t.match(await page.innerText('#overview .problems'), /policy\.yaml:\d+:\d+ .*unknown upstream "nowhere"/)
  t.equal(await page.title(), 'jwtgate status')
  t.same(errors, [])
})

browserTest(t, 'the admin token: the page asks for it, and shows itself once it is given', async (t) => {
  const { gw } = await trafficked(t, ', token: "${ADMIN_TOKEN}"')
  const context = await browser(t)
  const page = await context.newPage()
  const errors = watchErrors(page)
  const first = await page.goto(gw.adminUrl!)
  t.equal(first?.status(), 401)
  t.ok(await page.isVisible('input[type=password][name=token]'), 'a sign-in form asks for the token')
  t.notOk(await page.isVisible('table.routes'), 'and shows nothing else')
  await page.fill('#token', 'not-the-token-at-all')
  await Promise.all([page.waitForURL(/\/login$/), page.keyboard.press('Enter')])
  t.match(await page.textContent('main'), /That is not the admin token/)
  await page.fill('#token', 'the-admin-token-for-the-page')
  await Promise.all([page.waitForURL(`${gw.adminUrl}/`), page.keyboard.press('Enter')])
  t.ok(await page.isVisible('table.routes'), 'the page, once signed in')
  const cookies = await context.cookies()
  t.match(cookies, [{ name: 'jwtgate_admin', httpOnly: true, sameSite: 'Strict' }])
  t.notOk(cookies[0]!.value.includes('the-admin-token'), 'the cookie is no token')
  // The script's refreshes carry the session.
  await page.waitForFunction(() => (document.getElementById('updated')?.textContent ?? '').startsWith('As of'), null, { timeout: 15_000 })
  await Promise.all([page.waitForURL(`${gw.adminUrl}/`), page.click('text=Sign out')])
  t.ok(await page.isVisible('input[type=password][name=token]'), 'signed out: asked again')
  t.same(
    errors.filter((e) => !/401/.test(e)),
    [],
    'no error beyond the 401s of the sign-in page itself',
  )
})

browserTest(t, 'workers: 2: the six parts on one page for the whole gateway', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const file = tempFile(
    'policy.yaml',
    `version: 1
workers: 2
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  idp: { issuer: "${idp.url}", jwks_uri: "${idp.jwksUri}", audiences: [orders-api], algorithms: [RS256] }
revocation: { backend: memory }
upstreams:
  orders: { url: "${up.url}", health: { path: /healthz, interval: 200ms } }
routes:
  - { name: orders-api, path: /api/**, upstream: orders, auth: { issuers: [idp] } }
`,
  )
  const { url, admin } = await servedCluster(t, file)
  const token = idp.sign({ sub: 'a', aud: 'orders-api' })
  for (let i = 0; i < 6; i++) await get(`${url}/api/${i}`, i % 2 ? bearer(token) : { connection: 'close' })

  const context = await browser(t)
  const page = await context.newPage()
  const errors = watchErrors(page)
  await page.goto(admin)
  for (const part of ['overview', 'routes', 'issuers', 'refusals', 'ask', 'revocation', 'upstreams'])
    t.ok(await page.isVisible(`#${part} h2`), `${part} is shown`)
  t.same(
    (await rows(page, '#overview table')).map((r) => r.slice(0, 2)),
    [
      ['1', 'listening'],
      ['2', 'listening'],
    ],
    'both workers listed',
  )
  t.same((await rows(page, 'table.routes'))[0]!.slice(5, 7), ['6', '3'], "both workers' requests added up")
  t.match(await page.innerText('#revocation'), /Backend\s*memory.*Revocation lists by worker/s)
  t.match(await page.innerText('#upstreams'), /orders.*healthy/s)
  t.equal((await rows(page, '#refusals-list table')).length, 3)
  t.same(errors, [])
})
