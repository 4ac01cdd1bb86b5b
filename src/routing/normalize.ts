// Request-path normalization. The policy is matched against the normalized path and the upstream
// is sent that same path, so the two can never disagree about which route a request belongs to.
// Every input that two servers could reasonably read differently is either rewritten to one
// canonical form here or refused: that gap is what path-confusion attacks live in (Istio
// CVE-2021-39156/39155 and the `%2F`/`..;/` family, Tomcat's `/admin;/`, IIS and Windows
// back ends reading `\` as `/`, double-decoding `%252e`).

/**
 * A request path made canonical, or why it is refused: a request's check, not a policy problem.
 * `ambiguous` is set when the canonical path is one an upstream could read as another path by
 * decoding it again or by applying Unicode compatibility normalization (NFKC): it is not refused
 * here, because whether it may pass depends on the route (`allow_ambiguous_paths`), which is only
 * known after the match; src/decide.ts refuses it there.
 */
export type NormalizedPath = { ok: true; path: string; ambiguous?: string } | { ok: false; reason: string }

export interface NormalizeOptions {
  /** Refuse `;` anywhere in the path, raw or as %3B. The policy defaults this to true. */
  rejectPathParameters: boolean
}

const SLASH = 0x2f
const PERCENT = 0x25
const DOT = 0x2e
const SEMICOLON = 0x3b

// Classes of the ASCII characters as they arrive raw (RFC 3986 §3.3: pchar).
const UNRESERVED = 1 // §2.3 ALPHA DIGIT - . _ ~
const PCHAR = 2 // §2.2 sub-delims except `;`, plus `:` and `@`: valid raw, kept raw
const ENCODE = 3 // printable but not allowed raw in a path: percent-encoded, as nginx and Envoy do
// Every other character is refused (0): controls, DEL, `\`, `#`, `?`.
const CLASS = new Uint8Array(128)
for (let c = 0x30; c <= 0x39; c++) CLASS[c] = UNRESERVED
for (let c = 0x41; c <= 0x5a; c++) CLASS[c] = UNRESERVED
for (let c = 0x61; c <= 0x7a; c++) CLASS[c] = UNRESERVED
for (const ch of '-._~') CLASS[ch.charCodeAt(0)] = UNRESERVED
for (const ch of "!$&'()*+,=:@") CLASS[ch.charCodeAt(0)] = PCHAR
for (const ch of ' "<>[]^`{|}') CLASS[ch.charCodeAt(0)] = ENCODE

const HEX = '0123456789ABCDEF'

// Refusals are shared frozen values: a flood of bad requests allocates nothing.
function refuse(reason: string): NormalizedPath {
  return Object.freeze({ ok: false as const, reason })
}
const NOT_ABSOLUTE = refuse('path must start with /')
const ENCODED_SLASH = refuse('encoded slash in path')
const ENCODED_BACKSLASH = refuse('encoded backslash in path')
const BACKSLASH = refuse('backslash in path')
const NUL = refuse('NUL byte in path')
const CONTROL = refuse('control character in path')
const MALFORMED = refuse('malformed percent-encoding in path')
const BAD_UTF8 = refuse('percent-encoded bytes are not valid UTF-8')
const RAW_NON_ASCII = refuse('non-ASCII characters in path must be percent-encoded')
const PATH_PARAMETER = refuse('path parameter (;) in path')
const FRAGMENT = refuse("'#' in path")
const QUERY = refuse("'?' in path (the query must be split off first)")

// What makes a path ambiguous (NormalizedPath.ambiguous).
const DOUBLE_ENCODED = 'percent-encoding that a second decoding would decode again (%25 followed by an escape)'
const COMPATIBILITY = 'a character that Unicode compatibility normalization (NFKC) turns into ., / or \\'

/**
 * The code points whose NFKC form contains `.`, `/` or `\` (the one- and two-dot leaders, the
 * ellipsis, the fullwidth full stop, solidus and reverse solidus, `⒈`, `℀` and their kin), found
 * by scanning every code point with String.prototype.normalize('NFKC'); the test scans again
 * and compares, so a Unicode update that adds one fails it.
 */
const NFKC_DOT_OR_SLASH: ReadonlySet<number> = new Set([
  0x2024, 0x2025, 0x2026, 0x2100, 0x2101, 0x2105, 0x2106, 0x2488, 0x2489, 0x248a, 0x248b, 0x248c, 0x248d, 0x248e, 0x248f, 0x2490, 0x2491, 0x2492, 0x2493,
  0x2494, 0x2495, 0x2496, 0x2497, 0x2498, 0x2499, 0x249a, 0x249b, 0x33c2, 0x33c7, 0x33d8, 0xfe19, 0xfe30, 0xfe52, 0xfe68, 0xff0e, 0xff0f, 0xff3c, 0x1f100,
])

/**
 * Normalize a request path (no query string) or say why it cannot be done safely.
 * The result is idempotent: normalizing a normalized path returns it unchanged.
 */
export function normalizePath(rawPath: string, options: NormalizeOptions): NormalizedPath {
  // Absolute-form (`http://host/x`), asterisk-form (`*`) and empty targets have no path to match.
  if (rawPath.charCodeAt(0) !== SLASH) return NOT_ABSOLUTE
  if (isAlreadyNormal(rawPath)) return { ok: true, path: rawPath }
  return normalizeSlow(rawPath, options.rejectPathParameters)
}

/** Split a request target at the first '?'; the query keeps its '?' and is never altered. */
export function splitTarget(rawUrl: string): { path: string; query: string } {
  const q = rawUrl.indexOf('?')
  if (q < 0) return { path: rawUrl, query: '' }
  return { path: rawUrl.slice(0, q), query: rawUrl.slice(q) }
}

/**
 * The fast path: only characters that are kept raw, no `%`, no `;`, no empty segment (`//`)
 * and no segment starting with a dot (`/.`, which covers `.` and `..`). Such a path is its own
 * normal form. `;` is left to the slow path so the option is honoured in one place.
 */
function isAlreadyNormal(path: string): boolean {
  let prev = SLASH
  for (let i = 1; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c === SLASH) {
      if (prev === SLASH) return false
    } else if (c === DOT) {
      if (prev === SLASH) return false
    } else if (c >= 128 || (CLASS[c] !== UNRESERVED && CLASS[c] !== PCHAR)) {
      return false
    }
    prev = c
  }
  return true
}

function normalizeSlow(raw: string, rejectParams: boolean): NormalizedPath {
  const kept: string[] = [] // segments that survive dot-segment removal
  let trailingSlash = false
  // Set by an escape that could make the path ambiguous (see NormalizedPath.ambiguous).
  let percent25 = false
  let ambiguous: string | undefined
  let seg = ''
  const n = raw.length
  let i = 1
  for (;;) {
    if (i === n || raw.charCodeAt(i) === SLASH) {
      // End of a segment. Dot segments are recognized only after decoding, so `%2e%2e` and
      // `.%2E` are `..` here (RFC 3986 §6.2.2.3 does the decoding before §5.2.4 removal).
      const last = i === n
      if (seg === '..') kept.pop()
      else if (seg !== '.' && seg !== '') kept.push(seg)
      // An empty segment in the middle is a run of slashes and is dropped. At the end, an empty
      // or dot segment leaves a trailing slash: `/a/b/` and `/a/b/.` are both `/a/b/` (§5.2.4).
      if (last) {
        trailingSlash = seg === '' || seg === '.' || seg === '..'
        break
      }
      seg = ''
      i++
      continue
    }
    const c = raw.charCodeAt(i)
    if (c === PERCENT) {
      const b = hexByte(raw, i)
      if (b < 0) return MALFORMED
      if (b < 0x80) {
        const refusal = refuseEncoded(b, rejectParams)
        if (refusal !== null) return refusal
        // §2.3 / §6.2.2.2: encoded unreserved characters are the same as the raw ones. Other
        // escapes keep their meaning (%2A is not `*`, %25 is not the start of another escape:
        // decoding only once keeps `%252e` from becoming `.`), with the hex in upper case (§6.2.2.1).
        seg += CLASS[b] === UNRESERVED ? String.fromCharCode(b) : percentEncoded(b)
        if (b === PERCENT) percent25 = true
        i += 3
      } else {
        const length = utf8Length(raw, i, b)
        if (length === 0) return BAD_UTF8
        let codePoint = b & (0xff >> (length + 1))
        for (let k = 0; k < length; k++, i += 3) {
          const byte = hexByte(raw, i)
          if (k > 0) codePoint = (codePoint << 6) | (byte & 0x3f)
          seg += percentEncoded(byte)
        }
        if (NFKC_DOT_OR_SLASH.has(codePoint)) ambiguous = COMPATIBILITY
      }
      continue
    }
    if (c >= 0x80) return RAW_NON_ASCII // Node hands raw bytes over as latin1 characters
    if (c === SEMICOLON) {
      if (rejectParams) return PATH_PARAMETER
      seg += ';'
    } else {
      const cls = CLASS[c]
      if (cls === UNRESERVED || cls === PCHAR) seg += raw[i]
      else if (cls === ENCODE) seg += percentEncoded(c)
      else return refuseRaw(c)
    }
    i++
  }
  if (kept.length === 0) return { ok: true, path: '/' }
  let path = '/' + kept.join('/')
  if (trailingSlash) path += '/'
  if (percent25 && isDoubleEncoded(path)) ambiguous ??= DOUBLE_ENCODED
  return ambiguous === undefined ? { ok: true, path } : { ok: true, path, ambiguous }
}

/**
 * Whether a normalized path still holds an escape after one more decoding: `%25` followed by two
 * hex digits (`%252e`, `%252F`, `%255c`, `%25%32%65` once its unreserved escapes are decoded,
 * `%2525…`) or by IIS's `u` and four (`%25u002e`). An upstream that decodes twice (some Java,
 * .NET and Python stacks, and proxies that decode before passing on) would read a `.`, `/` or
 * `\` there that the route never matched. In a normalized path the characters after `%25` are
 * raw: unreserved escapes were decoded and the others are never hex digits.
 */
function isDoubleEncoded(path: string): boolean {
  for (let at = path.indexOf('%25'); at >= 0; at = path.indexOf('%25', at + 3)) {
    const next = at + 3
    if (hexDigit(path.charCodeAt(next)) >= 0 && hexDigit(path.charCodeAt(next + 1)) >= 0) return true
    if ((path.charCodeAt(next) | 0x20) === 0x75) {
      let k = 1
      while (k <= 4 && hexDigit(path.charCodeAt(next + k)) >= 0) k++
      if (k === 5) return true
    }
  }
  return false
}

/** A refusal for an ASCII byte arriving percent-encoded, or null if it is allowed. */
function refuseEncoded(b: number, rejectParams: boolean): NormalizedPath | null {
  // %2F and %5C split a segment for some servers and not for others: a route for /public/**
  // must not see `/public/..%2Fadmin` while the upstream sees `/admin`.
  if (b === 0x2f) return ENCODED_SLASH
  if (b === 0x5c) return ENCODED_BACKSLASH
  if (b === 0) return NUL
  if (b < 0x20 || b === 0x7f) return CONTROL
  if (b === SEMICOLON && rejectParams) return PATH_PARAMETER
  return null
}

/** The refusal for a raw ASCII character refused (class 0). */
function refuseRaw(c: number): NormalizedPath {
  if (c === 0x5c) return BACKSLASH
  if (c === 0) return NUL
  if (c === 0x23) return FRAGMENT
  if (c === 0x3f) return QUERY
  return CONTROL
}

function percentEncoded(b: number): string {
  return '%' + HEX[b >> 4] + HEX[b & 15]
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  const lower = c | 0x20
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10
  return -1
}

/**
 * The byte encoded by the escape at `i`, or -1 if it is not `%` HEXDIG HEXDIG. Past the end of
 * the string charCodeAt gives NaN, which is no hex digit, so a truncated escape is -1 too.
 */
function hexByte(s: string, i: number): number {
  if (s.charCodeAt(i) !== PERCENT) return -1
  const hi = hexDigit(s.charCodeAt(i + 1))
  const lo = hexDigit(s.charCodeAt(i + 2))
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo
}

/**
 * The number of bytes in the well-formed UTF-8 sequence whose lead byte `lead` is escaped at
 * `i`, or 0. Follows Unicode table 3-7, so overlong forms (%C0%AE is an overlong `.`, a classic
 * traversal trick), UTF-16 surrogates (%ED%A0%80) and code points past U+10FFFF are all refused.
 */
function utf8Length(s: string, i: number, lead: number): number {
  let length: number
  let min = 0x80 // range of the second byte; later bytes are always 0x80..0xBF
  let max = 0xbf
  if (lead >= 0xc2 && lead <= 0xdf) length = 2
  else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3
    if (lead === 0xe0)
      min = 0xa0 // overlong
    else if (lead === 0xed) max = 0x9f // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4
    if (lead === 0xf0)
      min = 0x90 // overlong
    else if (lead === 0xf4) max = 0x8f // past U+10FFFF
  } else {
    return 0 // a continuation byte, an overlong lead (C0, C1) or F5..FF
  }
  for (let k = 1; k < length; k++) {
    const b = hexByte(s, i + 3 * k)
    if (b < min || b > max) return 0
    min = 0x80
    max = 0xbf
  }
  return length
}
