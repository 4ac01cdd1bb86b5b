// URL checks shared by the section compilers (upstreams, issuers' key sets).

/** An absolute http: or https: URL with a host. */
export function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text)
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== ''
  } catch {
    return false
  }
}

const HIDDEN = '[redacted]'

/**
 * Query (and fragment) parameters whose values are secrets, compared by name lower-cased with
 * `-`, `_` and `.` removed, a name matching when it is one of these or ends with one:
 * `api_key`, `x-api-key`, `subscription-key`, `access_token`, `id_token`, `client_secret`,
 * `X-Amz-Signature`, `sig` (Azure SAS) all do. Hiding a harmless `sort_key` is the price.
 */
export const SECRET_PARAMETERS: readonly string[] = [
  'password',
  'passwd',
  'pwd',
  'pass',
  'apikey',
  'key',
  'token',
  'secret',
  'sig',
  'signature',
  'credential',
  'credentials',
  'auth',
  'authorization',
  'code',
]

// Names a policy adds (log.redact_url_parameters). Process-wide, because URLs are shown from many
// places (log lines of key fetches, problem messages, GET /config) that should not each carry the
// policy; names are only ever added, so a reload cannot make a URL shown before less hidden, and
// a name removed from the policy stays hidden until the next restart.
const marked = new Set<string>()

/** Adds a policy's names of secret URL parameters to those every redactUrl hides. */
export function markSecretParameters(names: Iterable<string>): void {
  for (const name of names) marked.add(normalizeName(name))
}

/**
 * A URL as it may be shown (GET /config, a log line, a problem message): the user info (user
 * name and password) and the values of secret parameters (SECRET_PARAMETERS, the names a policy
 * marked, and the names in `extra`, compared the same way) replaced by `[redacted]`. Done on the text, not through URL,
 * which would percent-encode the brackets and normalize the rest, and which reads a password
 * holding `@`, `?` or `#` differently from other clients: the user info is everything up to the
 * last `@` before the first `/` after `//`, which hides at least what any of them reads as it.
 * Text that is no URL comes back as it is, but for parameters after a `?`.
 */
export function redactUrl(text: string, extra: Iterable<string> = []): string {
  const names = [...SECRET_PARAMETERS, ...marked, ...[...extra].map(normalizeName)]
  let out = text
  const authority = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(out)
  if (authority) {
    const start = authority[0].length
    const slash = out.indexOf('/', start)
    const at = out.lastIndexOf('@', slash < 0 ? out.length : slash)
    if (at >= start) out = `${out.slice(0, start)}${HIDDEN}${out.slice(at)}`
  }
  const q = out.indexOf('?')
  const h = out.indexOf('#')
  // The query, then the fragment (OAuth's implicit flow puts access_token there).
  if (h >= 0) out = `${out.slice(0, h + 1)}${redactParameters(out.slice(h + 1), names)}`
  if (q >= 0 && (h < 0 || q < h)) {
    const end = h < 0 ? out.length : out.indexOf('#', q)
    out = `${out.slice(0, q + 1)}${redactParameters(out.slice(q + 1, end), names)}${out.slice(end)}`
  }
  return out
}

function redactParameters(query: string, names: readonly string[]): string {
  return query
    .split(/([&;])/)
    .map((parameter, i) => {
      if (i % 2 === 1) return parameter // a separator
      const eq = parameter.indexOf('=')
      if (eq < 0) return parameter
      const raw = parameter.slice(0, eq)
      let name: string
      try {
        name = normalizeName(decodeURIComponent(raw.replaceAll('+', ' ')))
      } catch {
        // A name no client could read the same way: not worth the risk of showing its value.
        return `${raw}=${HIDDEN}`
      }
      return names.some((secret) => name === secret || name.endsWith(secret)) ? `${raw}=${HIDDEN}` : parameter
    })
    .join('')
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[-_.\s]/g, '')
}

/** Free text (an error message) with every URL in it passed through redactUrl. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/g, (url) => redactUrl(url))
}
