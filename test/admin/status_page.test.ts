// The status page over HTTP (the browser tests in status_browser.test.ts look at it as a person
// does): its security headers, a first answer that has the data, "ask the policy" giving
// `jwtgate explain`'s answer, and admin.token.
import t from 'tap'
import { explainHere } from '../support/cli.js'
import { bearer, gateway, get, issuer, policy, policyProblems, rawGet, tempFile, upstream } from '../support/harness.js'

const ROUTES = `  - { name: admin, path: /admin/**, methods: [GET, POST], upstream: orders, auth: { issuers: [idp], claims: { roles: { contains: admin } } } }
  - { name: api, path: /api/**, upstream: orders, auth: { issuers: [idp] } }`

t.test('the page: security headers, the data in the first answer, everything escaped', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const gw = await gateway(t, policy({ issuer: idp, upstream: up, routes: ROUTES }))
  // A raw target the gateway refuses: its path is kept as the client wrote it, and shown as text.
  t.equal((await rawGet(gw.port, '/api/x\\<img/src/onerror=alert(1)>')).status, 400)
  const res = await fetch(`${gw.adminUrl}/`)
  const html = await res.text()
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/html/)
  const csp = res.headers.get('content-security-policy')!
  t.match(csp, /default-src 'none'/)
  t.match(csp, /script-src 'self'/)
  t.notMatch(csp, /unsafe-inline|unsafe-eval/)
  t.match(csp, /frame-ancestors 'none'/)
  t.equal(res.headers.get('x-content-type-options'), 'nosniff')
  t.equal(res.headers.get('cache-control'), 'no-store')
  t.notMatch(html, /<script>|<script [^>]*>[^<]|<style|\sstyle=|\son[a-z]+=/, 'no inline script, style or handler')
  t.match(html, /<script src="\/status.js" defer><\/script>/)
  t.match(html, /<th scope="row"><span class="route-name">admin<\/span>/, 'routes rendered on the server')
  t.match(html, /claim roles must contain &quot;admin&quot;/)
  t.match(html, /<code>bad_path<\/code>|<code>missing_token<\/code>/)
  t.notMatch(html, /<img/, 'a path a client chose is text')
  t.match(html, /&lt;img\/src\/onerror=alert\(1\)&gt;/)
  for (const path of ['/status.js', '/status.css', '/status.json', '/healthz']) {
    const r = await fetch(`${gw.adminUrl}${path}`)
    t.equal(r.headers.get('x-content-type-options'), 'nosniff', `${path} has the headers too`)
    t.match(r.headers.get('content-security-policy'), /frame-ancestors 'none'/)
  }
  t.match(await (await fetch(`${gw.adminUrl}/status.js`)).text(), /replaceChildren/)
  t.equal((await fetch(`${gw.url}/status.json`)).status, 404, 'the proxy port never serves the page')
})

t.test('ask the policy: the same answer as jwtgate explain, without a token or forwarding', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = policy({ issuer: idp, upstream: up, routes: ROUTES })
  const gw = await gateway(t, yaml)
  const file = tempFile('policy.yaml', yaml)
  const claims = '{"sub":"alice","roles":["user"]}'
  const cli = await explainHere(['-c', file, 'GET', '/public/../admin/users', '--claims', claims])
  const json = (
    await get(
      `${gw.adminUrl}/ask.json`,
      { 'content-type': 'application/json' },
      {
        method: 'POST',
        body: JSON.stringify({ method: 'GET', path: '/public/../admin/users', claims: JSON.parse(claims) }),
      },
    )
  ).json
  t.match(json, { decision: 'deny', status: 403, reason: 'insufficient_claims', route: { name: 'admin' }, evaluated_with: 'claims' })
  const page = await (
    await fetch(`${gw.adminUrl}/ask?method=GET&path=${encodeURIComponent('/public/../admin/users')}&claims=${encodeURIComponent(claims)}`)
  ).text()
  const shown = /<pre id="explanation">([\s\S]*?)<\/pre>/.exec(page)![1]!
  const fromHtml = (s: string) =>
    s
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&')
  t.equal(fromHtml(shown), cli.stdout, "the page shows explain's text")
  t.equal(up.received.length, 0, 'nothing was forwarded')

  const bad = await get(`${gw.adminUrl}/ask.json`, { 'content-type': 'application/json' }, { method: 'POST', body: '{"method":"GET","path":"x"}' })
  t.equal(bad.status, 400)
  const echoed = await (
    await fetch(`${gw.adminUrl}/ask?method=GET&path=/api/x&claims=${encodeURIComponent('{nope</textarea><script>alert(1)</script>')}`)
  ).text()
  t.match(echoed, /the claims are not valid JSON/)
  t.notMatch(echoed, /<\/textarea><script>/, 'what was typed into the form comes back as text')
})

t.test('admin.token: every path but the probes needs it; the page asks for it', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const token = 'the-admin-token-0123456789'
  const gw = await gateway(
    t,
    policy({ issuer: idp, upstream: up, routes: ROUTES }).replace(
      'admin: { host: 127.0.0.1, port: 0 }',
      'admin: { host: 127.0.0.1, port: 0, token: "${ADMIN_TOKEN}" }',
    ),
    { ADMIN_TOKEN: token },
  )
  const admin = gw.adminUrl!
  for (const path of ['/healthz', '/readyz', '/status.css', '/status.js']) t.equal((await fetch(`${admin}${path}`)).status, 200, `${path} is open`)
  for (const path of ['/', '/status.json', '/metrics', '/config', '/status/refusals.json']) {
    const res = await fetch(`${admin}${path}`)
    t.equal(res.status, 401, `${path} needs the token`)
    t.equal(res.headers.get('www-authenticate'), 'Bearer realm="jwtgate-admin"')
  }
  t.equal((await fetch(`${admin}/status.json`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401)
  t.equal((await fetch(`${admin}/status.json`, { headers: { authorization: `Bearer ${token}` } })).status, 200)
  t.equal((await fetch(`${admin}/ask.json`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"path":"/api/x"}' })).status, 401)

  // A person gets the form, and a session cookie for the right token.
  const prompt = await fetch(`${admin}/`, { headers: { accept: 'text/html' } })
  t.equal(prompt.status, 401)
  t.match(await prompt.text(), /<input id="token" name="token" type="password"/)
  const wrong = await fetch(`${admin}/login`, { method: 'POST', body: new URLSearchParams({ token: 'nope' }), redirect: 'manual' })
  t.equal(wrong.status, 401)
  t.equal(wrong.headers.get('set-cookie'), null)
  const login = await fetch(`${admin}/login`, { method: 'POST', body: new URLSearchParams({ token }), redirect: 'manual' })
  t.equal(login.status, 303)
  const cookie = login.headers.get('set-cookie')!
  t.match(cookie, /^jwtgate_admin=\d+\.[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Strict/)
  t.notOk(cookie.includes(token), 'the cookie is no token')
  const session = cookie.split(';')[0]!
  const page = await fetch(`${admin}/`, { headers: { cookie: session } })
  t.equal(page.status, 200)
  t.match(await page.text(), /Sign out/)
  t.equal((await fetch(`${admin}/`, { headers: { cookie: `${session.slice(0, -2)}xx` } })).status, 401, 'a forged cookie is refused')
  const other = await fetch(`${admin}/login`, {
    method: 'POST',
    body: new URLSearchParams({ token }),
    headers: { origin: 'http://evil.example' },
    redirect: 'manual',
  })
  t.equal(other.status, 403, 'a sign-in from another site is refused')
  const framed = await fetch(`${admin}/login`, {
    method: 'POST',
    body: new URLSearchParams({ token }),
    headers: { 'sec-fetch-site': 'cross-site' },
    redirect: 'manual',
  })
  t.equal(framed.status, 403, 'so is one the browser says is cross-site')
})

t.test('admin.metrics_public serves /metrics without the token; a short token is a policy problem', async (t) => {
  const idp = await issuer(t)
  const up = await upstream(t)
  const yaml = policy({ issuer: idp, upstream: up, routes: ROUTES })
  const file = tempFile('token', 'a-token-from-a-file-0123456789\n')
  const gw = await gateway(
    t,
    yaml.replace('admin: { host: 127.0.0.1, port: 0 }', `admin: { host: 127.0.0.1, port: 0, token_file: "${file}", metrics_public: true }`),
  )
  t.equal((await fetch(`${gw.adminUrl}/metrics`)).status, 200)
  t.equal((await fetch(`${gw.adminUrl}/config`)).status, 401)
  t.equal((await fetch(`${gw.adminUrl}/config`, { headers: bearer('a-token-from-a-file-0123456789') })).status, 200, 'the file without its newline')
  t.match(policyProblems(yaml.replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 0, token: short }')), [
    /the admin token must be at least 16 bytes; it has 5/,
  ])
  t.match(policyProblems(yaml.replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 0, metrics_public: true }')), [
    /metrics_public goes with token/,
  ])
})
