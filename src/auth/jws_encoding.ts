// The canonical base64url of a JWS compact token (RFC 7515 §2, RFC 4648 §3.5): no padding, and
// the bits of the last character that encode no byte are zero. Node's decoder (under fast-jwt)
// ignores those bits, so without this check 16 spellings of an RS256 signature's last character
// verify alike: a token is one string, not one of many. fast-jwt's decoder checks the alphabet.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
/** The 6-bit value of each base64url character by char code; -1 for any other. */
const VALUE = new Int8Array(128).fill(-1)
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i

/**
 * Whether each part of the token ends canonically: a length that encodes whole bytes (not 1
 * more than a multiple of 4) and zero unused bits in the last character. Characters outside the
 * alphabet are left to the decoder, which refuses them.
 */
export function canonicalParts(token: string): boolean {
  const first = token.indexOf('.')
  const last = token.lastIndexOf('.')
  if (first < 0 || first === last) return true // not three parts: the decoder says malformed
  return canonicalEnd(token, 0, first) && canonicalEnd(token, first + 1, last) && canonicalEnd(token, last + 1, token.length)
}

function canonicalEnd(text: string, start: number, end: number): boolean {
  const rest = (end - start) % 4
  if (rest === 0) return true
  if (rest === 1) return false
  const value = VALUE[text.charCodeAt(end - 1)] ?? -1
  if (value < 0) return true // outside the alphabet: the decoder refuses it
  // 2 characters encode 1 byte (4 bits unused), 3 encode 2 bytes (2 bits unused).
  return (value & (rest === 2 ? 0b1111 : 0b11)) === 0
}
