// The status page as HTML, rendered on the server from the status document: the first answer has
// the data, so the page reads without JavaScript; status.js only fetches the page again and swaps
// the sections marked data-refresh. Every value is escaped (a path or a reload problem is text a
// client or a policy author chose); no inline script or style, so the CSP can forbid both.
import type { Explanation } from '../explain.js'
import { renderExplanation } from '../explain.js'
import type { StatusDocument, StatusFigures, StatusIssuer, StatusRefusal, StatusRoute } from './status.js'

export interface PageOptions {
  /** The refusals filter (reason code, route name), from the query string. */
  filter: { reason?: string; route?: string }
  /** The ask-the-policy form as submitted, and its answer. */
  ask?: { method: string; host: string; path: string; claims: string; answer?: Explanation; error?: string }
  /** The admin listener asks for a token: the page offers to forget it. */
  signedIn: boolean
}

const REFRESH_SECONDS = 5

export function renderStatusPage(doc: StatusDocument, options: PageOptions): string {
  const o = doc.overview
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>jwtgate status${o.ready ? '' : ' (not ready)'}</title>
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body data-refresh-seconds="${REFRESH_SECONDS}">
<a class="skip" href="#routes">Skip to routes</a>
<header>
<h1>jwtgate</h1>
<p class="live"><span id="updated" aria-live="polite">As of <time datetime="${esc(doc.generated_at)}">${esc(clock(doc.generated_at))}</time></span>
<button type="button" id="pause" hidden aria-pressed="false">Pause updates</button>
${options.signedIn ? '<form method="post" action="/logout" class="inline"><button type="submit">Sign out</button></form>' : ''}</p>
<nav aria-label="Sections"><ul>
<li><a href="#overview">Overview</a></li><li><a href="#routes">Routes</a></li><li><a href="#issuers">Issuers and keys</a></li>
<li><a href="#refusals">Recent refusals</a></li><li><a href="#ask">Ask the policy</a></li>${doc.revocation ? '<li><a href="#revocation">Revocation</a></li>' : ''}<li><a href="#upstreams">Upstreams</a></li>
</ul></nav>
</header>
<main>
${overview(doc)}
${routes(doc.routes)}
${issuers(doc.issuers)}
${refusals(doc, options.filter)}
${ask(options.ask)}
${revocation(doc)}
${upstreams(doc)}
</main>
</body>
</html>
`
}

function overview(doc: StatusDocument): string {
  const o = doc.overview
  const reload = o.last_reload
  const rows: Array<[string, string]> = [
    ['Version', `jwtgate ${esc(o.version)} on Node.js ${esc(o.node)}`],
    ['Running since', timeTag(o.started_at)],
    ['Policy', `<code>${esc(o.policy.file)}</code>`],
    ['Policy hash', `<code title="${esc(o.policy.hash)}">${esc(o.policy.hash.slice(0, 12))}</code>`],
    ['Loaded', timeTag(o.policy.loaded_at)],
    [
      'Last reload',
      reload
        ? `<span class="${reload.result === 'success' ? 'ok' : 'bad'}">${reload.result === 'success' ? 'succeeded' : 'failed: the loaded policy was kept'}</span> ${timeTag(reload.at)}`
        : 'none since the start',
    ],
    [
      'Readiness',
      o.ready
        ? `<span class="ok">ready</span>${o.degraded.length ? ` (degraded: ${o.degraded.map(esc).join('; ')})` : ''}`
        : '<span class="bad">not ready</span>',
    ],
  ]
  if (o.workers) rows.push(['Workers', `${o.workers.length}`])
  return `<section id="overview" data-refresh aria-labelledby="overview-h">
<h2 id="overview-h">Overview</h2>
<dl class="facts">${rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>
${!o.ready ? `<div class="problems" role="alert"><h3>Why it is not ready</h3><ul>${o.reasons.map((r) => `<li>${esc(r)}</li>`).join('')}</ul></div>` : ''}
${reload && reload.result === 'failure' ? `<div class="problems" role="alert"><h3>Problems of the refused reload</h3><ul>${reload.problems.map((p) => `<li><code>${esc(p)}</code></li>`).join('')}</ul></div>` : ''}
${
  o.workers
    ? table(
        'Workers',
        ['Worker', 'State', 'Process', 'Policy hash'],
        o.workers.map((w) => [
          String(w.worker),
          esc(w.state) + (w.error ? ` (${esc(w.error)})` : ''),
          w.pid === null ? '—' : String(w.pid),
          w.policy_hash ? `<code>${esc(w.policy_hash.slice(0, 12))}</code>${w.policy_hash !== o.policy.hash ? ' <span class="bad">differs</span>' : ''}` : '—',
        ]),
      )
    : ''
}
</section>`
}

function routes(list: StatusRoute[]): string {
  const rows = list.map((r) => {
    const now = r.last_5m
    return `<tr${r.never_matched ? ' class="unused"' : ''}>
<td>${r.index}</td>
<th scope="row"><span class="route-name">${esc(r.name)}</span>${r.never_matched ? ' <span class="tag" title="no request has matched this route since the start">never matched</span>' : ''}
<br><span class="match">${r.methods ? esc(r.methods.join(', ')) : 'any method'} <code>${esc(r.path)}</code>${r.host ? ` on ${esc(r.host)}` : ''}</span></th>
<td title="${esc(r.upstream.url)}">${esc(r.upstream.name)}</td>
<td><ul class="words">${r.requires.map((w) => `<li>${esc(w)}</li>`).join('')}</ul></td>
<td>${r.mode === 'report' ? '<span class="tag warn">report</span>' : 'enforce'}</td>
${figureCells(now)}
${figureCells(r.since_start)}
</tr>`
  })
  return `<section id="routes" data-refresh aria-labelledby="routes-h">
<h2 id="routes-h">Routes</h2>
<p class="note">In policy order: the first that matches a request decides. Figures for the last 5 minutes, then since the start; latency percentiles are estimated from the latency histogram's buckets.</p>
<div class="scroll" tabindex="0" role="region" aria-label="Routes table, scrolls sideways">
<table class="routes">
<caption>Routes and what they did</caption>
<thead>
<tr><th rowspan="2" scope="col">#</th><th rowspan="2" scope="col">Route: methods, path, host</th><th rowspan="2" scope="col">Upstream</th><th rowspan="2" scope="col">Requires</th><th rowspan="2" scope="col">Mode</th>
<th colspan="6" scope="colgroup">Last 5 minutes</th><th colspan="6" scope="colgroup">Since the start</th></tr>
<tr>${FIGURE_HEADS}${FIGURE_HEADS}</tr>
</thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>
</div>
</section>`
}

const FIGURE_HEADS = ['Requests', 'Allowed', 'Denied', '5xx', 'p50', 'p99'].map((h) => `<th scope="col">${h}</th>`).join('')

function figureCells(f: StatusFigures): string {
  const denied = Object.entries(f.denied)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `<li><code>${esc(reason)}</code> ${n}</li>`)
    .join('')
  const would =
    f.would_deny && Object.keys(f.would_deny).length
      ? `<p class="small">would deny: ${Object.entries(f.would_deny)
          .map(([r, n]) => `${esc(r)} ${n}`)
          .join(', ')}</p>`
      : ''
  return `<td class="num">${f.requests}</td><td class="num">${f.allowed}</td><td class="num">${f.denied_total}${denied ? `<ul class="reasons">${denied}</ul>` : ''}${would}</td><td class="num${f.server_errors ? ' bad' : ''}">${f.server_errors}</td><td class="num">${ms(f.p50_ms)}</td><td class="num">${ms(f.p99_ms)}</td>`
}

function issuers(list: StatusIssuer[]): string {
  if (!list.length) return section('issuers', 'Issuers and keys', '<p>The policy has no issuers: every route is <code>auth: none</code>.</p>')
  const body = list
    .map((i) => {
      const source =
        i.source.kind === 'jwks'
          ? `key set <code>${esc(i.source.url)}</code>`
          : i.source.kind === 'discovery'
            ? `OpenID discovery <code>${esc(i.source.url)}</code>${i.source.jwks_url ? `, key set <code>${esc(i.source.jwks_url)}</code>` : ''}`
            : `${i.source.secrets === 1 ? 'a shared secret' : `${i.source.secrets} shared secrets`} (never shown)`
      const fetch = i.last_fetch
      const facts: Array<[string, string]> = [
        ['iss', `<code>${esc(i.iss)}</code>`],
        ['Keys from', source],
        ['Algorithms', esc(i.algorithms.join(', '))],
        ['Audiences', esc(i.audiences.join(', ')) || '<span class="muted">none</span>'],
        ['State', i.ready ? '<span class="ok">has keys</span>' : '<span class="bad">no signing keys yet</span>'],
      ]
      if (i.source.kind !== 'secret') {
        facts.push(
          [
            'Last fetch',
            fetch
              ? `<span class="${fetch.result === 'ok' ? 'ok' : 'bad'}">${fetch.result}</span> ${timeTag(fetch.at)}, ${fetch.duration_ms} ms${fetch.http_status !== null ? `, HTTP ${fetch.http_status}` : ''}${fetch.error ? `: ${esc(fetch.error)}` : ''}`
              : 'none yet',
          ],
          ['Last success', i.last_success ? timeTag(i.last_success) : 'never'],
          ['Next refresh', i.next_refresh ? timeTag(i.next_refresh) : 'none scheduled'],
          [
            'Unknown-kid cool-down',
            i.cooldown
              ? `${i.cooldown.seconds} s; ${i.cooldown.active ? `active until ${timeTag(i.cooldown.until!)}` : 'not active: an unknown kid fetches at once'}`
              : '—',
          ],
        )
      }
      const refused = Object.entries(i.tokens.refused)
      facts.push([
        'Tokens',
        `${i.tokens.accepted} accepted; ${refused.length ? `refused: ${refused.map(([r, n]) => `<code>${esc(r)}</code> ${n}`).join(', ')}` : 'none refused'}`,
      ])
      const keys = table(
        `Keys of ${esc(i.name)}`,
        ['kid', 'kty', 'crv', 'alg', 'Verifies', 'First seen'],
        i.keys.map((k) => [
          k.kid === null ? '<span class="muted">none</span>' : `<code>${esc(k.kid)}</code>`,
          esc(k.kty),
          k.crv ? esc(k.crv) : '—',
          k.alg ? esc(k.alg) : '—',
          esc(k.algorithms.join(', ')),
          k.first_seen ? timeTag(k.first_seen) : '—',
        ]),
      )
      const workers = i.workers
        ? table(
            `Key caches of ${esc(i.name)} by worker`,
            ['Worker', 'Keys', 'Last fetch'],
            i.workers.map((w) => [String(w.worker), String(w.keys), w.last_fetch ? `${esc(w.last_fetch.result)} ${timeTag(w.last_fetch.at)}` : 'none yet']),
          )
        : ''
      return `<article class="issuer" aria-labelledby="issuer-${esc(i.name)}"><h3 id="issuer-${esc(i.name)}">${esc(i.name)}</h3>
<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>${keys}${workers}</article>`
    })
    .join('\n')
  return section('issuers', 'Issuers and keys', body)
}

function refusals(doc: StatusDocument, filter: PageOptions['filter']): string {
  const shown = doc.refusals.filter((r) => (!filter.reason || r.reason === filter.reason) && (!filter.route || r.route === filter.route))
  const reasons = [...new Set(doc.refusals.map((r) => r.reason))].sort()
  const routeNames = [...new Set(doc.refusals.flatMap((r) => (r.route ? [r.route] : [])))].sort()
  const subjects = doc.refusals.some((r) => r.subject !== undefined)
  const workers = doc.refusals.some((r) => r.worker !== undefined)
  const select = (name: string, label: string, values: string[], chosen: string | undefined) =>
    `<label>${label} <select name="${name}"><option value="">any</option>${[...new Set([...values, ...(chosen ? [chosen] : [])])]
      .map((v) => `<option${v === chosen ? ' selected' : ''} value="${esc(v)}">${esc(v)}</option>`)
      .join('')}</select></label>`
  const heads = [
    'Time',
    'Route',
    'Method',
    'Path',
    'Status',
    'Reason',
    'Issuer',
    'Request id',
    ...(subjects ? ['Subject'] : []),
    ...(workers ? ['Worker'] : []),
  ]
  const rows = shown.map((r) => refusalCells(r, subjects, workers))
  const form = `<form method="get" action="/#refusals" class="filter" aria-label="Filter the refusals">
${select('reason', 'Reason', reasons, filter.reason)}
${select('route', 'Route', routeNames, filter.route)}
<button type="submit">Filter</button>${filter.reason || filter.route ? ' <a href="/#refusals">Show all</a>' : ''}
</form>`
  return `<section id="refusals" aria-labelledby="refusals-h">
<h2 id="refusals-h">Recent refusals</h2>
<p class="note">The last ${doc.refusals_kept} refused requests and upstream failures, newest first. Never a token, a cookie or the query string${subjects ? '' : '; subjects are shown only with <code>admin.status.show_subjects: true</code>'}. Find a request's log line by its request id.</p>
${form}
<div data-refresh id="refusals-list">
${rows.length ? table(`Recent refusals${filter.reason || filter.route ? ' (filtered)' : ''}`, heads, rows) : `<p>${doc.refusals.length ? 'No refusal matches the filter.' : 'No refusal since the start.'}</p>`}
</div>
</section>`
}

function refusalCells(r: StatusRefusal, subjects: boolean, workers: boolean): string[] {
  return [
    timeTag(r.at),
    r.route ? esc(r.route) : '<span class="muted">none</span>',
    esc(r.method),
    `<code>${esc(r.path)}</code>`,
    String(r.status),
    `<code>${esc(r.reason)}</code><br><span class="small">${esc(r.words)}</span>`,
    r.issuer ? esc(r.issuer) : r.upstream ? `upstream ${esc(r.upstream)}` : '—',
    `<code class="small">${esc(r.request_id)}</code>`,
    ...(subjects ? [r.subject ? esc(r.subject) : '—'] : []),
    ...(workers ? [r.worker === undefined ? '—' : String(r.worker)] : []),
  ]
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

function ask(form: PageOptions['ask']): string {
  const method = form?.method ?? 'GET'
  const answer = form?.answer
  return `<section id="ask" aria-labelledby="ask-h">
<h2 id="ask-h">Ask the policy</h2>
<p class="note">What the loaded policy does with a request, in the words of <code>jwtgate explain</code> (the same decision code the proxy runs). Claims are taken as verified: no token is verified and nothing is forwarded.</p>
<form method="get" action="/ask#ask" class="ask">
<label>Method <select name="method">${[...new Set([...METHODS, method])].map((m) => `<option${m === method ? ' selected' : ''}>${esc(m)}</option>`).join('')}</select></label>
<label>Host <input name="host" value="${esc(form?.host ?? '')}" placeholder="any" autocomplete="off"></label>
<label class="wide">Path <input name="path" required value="${esc(form?.path ?? '')}" placeholder="/api/orders" autocomplete="off"></label>
<label class="wide">Claims (JSON, optional) <textarea name="claims" rows="3" placeholder='{"sub":"alice","roles":["admin"]}'>${esc(form?.claims ?? '')}</textarea></label>
<button type="submit">Ask</button>
</form>
${form?.error ? `<p class="bad" role="alert">${esc(form.error)}</p>` : ''}
${answer ? `<div class="answer" role="status"><p><strong class="${answer.decision === 'allow' ? 'ok' : 'bad'}">${answer.decision === 'allow' ? 'ALLOW' : `DENY ${answer.status ?? ''} ${esc(answer.reason ?? '')}`}</strong></p><pre id="explanation">${esc(renderExplanation(answer))}</pre></div>` : ''}
</section>`
}

function revocation(doc: StatusDocument): string {
  const r = doc.revocation
  if (!r) return ''
  const facts: Array<[string, string]> = [
    ['Backend', esc(r.backend)],
    ['State', `<span class="${r.state === 'synced' ? 'ok' : 'bad'}">${esc(r.state)}</span>`],
    ['When the backend is away', esc(r.on_backend_unavailable)],
    ['Revoked token ids (jti)', String(r.jti)],
    ['Revoked subjects', String(r.subjects)],
    ['Last sync', r.last_sync ? timeTag(r.last_sync) : 'never'],
    ...(r.unavailable_since ? ([['Unavailable since', timeTag(r.unavailable_since)]] as Array<[string, string]>) : []),
    ...(r.last_error ? ([['Last error', esc(r.last_error)]] as Array<[string, string]>) : []),
  ]
  const workers = r.workers
    ? table(
        'Revocation lists by worker',
        ['Worker', 'State', 'jti', 'Subjects', 'Last sync'],
        r.workers.map((w) => [String(w.worker), esc(w.state), String(w.jti), String(w.subjects), w.last_sync ? timeTag(w.last_sync) : 'never']),
      )
    : ''
  return section('revocation', 'Revocation', `<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>${workers}`)
}

function upstreams(doc: StatusDocument): string {
  const rows = doc.upstreams.map((u) => [
    `<span class="route-name">${esc(u.name)}</span>`,
    `<code class="small">${esc(u.url)}</code>`,
    `${u.connections.open} open, ${u.connections.in_use} in use${u.connections.streams === undefined ? '' : `, ${u.connections.streams} streams`}${u.connections.waiting ? `, <span class="bad">${u.connections.waiting} waiting</span>` : ''}`,
    u.health
      ? `<span class="${u.health.state === 'healthy' ? 'ok' : 'bad'}">${esc(u.health.state)}</span> (<code>${esc(u.health.check)}</code>${u.health.last_check ? `, checked ${timeTag(u.health.last_check)}` : ''})${u.health.last_problem ? `<br><span class="small">last problem: ${esc(u.health.last_problem)}</span>` : ''}`
      : '<span class="muted">no health check</span>',
    u.recent_errors.length
      ? `<ul class="reasons">${u.recent_errors.map((e) => `<li>${timeTag(e.at)} <code>${esc(e.reason)}</code> ${e.route ? esc(e.route) : ''} <code class="small">${esc(e.request_id)}</code></li>`).join('')}</ul>`
      : 'none',
  ])
  return section('upstreams', 'Upstreams', table('Upstreams', ['Upstream', 'URL', 'Connections', 'Health', 'Recent errors'], rows))
}

function section(id: string, title: string, body: string): string {
  return `<section id="${id}" data-refresh aria-labelledby="${id}-h">
<h2 id="${id}-h">${title}</h2>
${body}
</section>`
}

/** A table whose cells are HTML already escaped; the first column heads its rows. */
function table(caption: string, heads: string[], rows: string[][]): string {
  return `<div class="scroll" tabindex="0" role="region" aria-label="${caption}, scrolls sideways"><table>
<caption>${caption}</caption>
<thead><tr>${heads.map((h) => `<th scope="col">${h}</th>`).join('')}</tr></thead>
<tbody>${rows.map((cells) => `<tr>${cells.map((c, i) => (i === 0 ? `<th scope="row">${c}</th>` : `<td>${c}</td>`)).join('')}</tr>`).join('\n')}</tbody>
</table></div>`
}

function timeTag(at: string): string {
  return `<time datetime="${esc(at)}" title="${esc(at)}">${esc(clock(at))}</time>`
}

/** `2026-05-04 13:02:07 UTC`: the page is rendered on the server, which knows no reader's time zone. */
function clock(at: string): string {
  return `${at.slice(0, 10)} ${at.slice(11, 19)} UTC`
}

function ms(value: number | null): string {
  if (value === null) return '—'
  return value >= 100 ? `${Math.round(value)} ms` : `${value.toFixed(value >= 10 ? 1 : 2)} ms`
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text or an attribute value, escaped. */
export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}
