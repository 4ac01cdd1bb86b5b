// One bounded GET of a JSON document from an IdP (a key set, a discovery document): limited in
// time (connect, headers, body and the whole fetch) and in size, redirects refused (undici's
// request does not follow them, so a 3xx is just not 200), certificates verified.
import { request, type Agent } from 'undici'

/** What the caller wants to know of a fetch besides its body: the HTTP status of the last answer (the status page shows it). */
export interface FetchSeen {
  status?: number
}

export async function fetchJson(
  uri: string,
  agent: Agent,
  timeoutMs: number,
  maxBytes: number,
  accept: string,
  seen?: FetchSeen,
): Promise<{ body: unknown; headers: Record<string, string | string[] | undefined> }> {
  const response = await request(uri, {
    dispatcher: agent,
    headers: { accept },
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (seen) seen.status = response.statusCode
  if (response.statusCode !== 200) {
    await response.body.dump({ limit: 64 * 1024 }).catch(() => {})
    throw new Error(`HTTP ${response.statusCode}`)
  }
  const text = await readLimited(response.body, maxBytes)
  try {
    return { body: JSON.parse(text) as unknown, headers: response.headers }
  } catch {
    throw new Error('response is not JSON')
  }
}

async function readLimited(body: AsyncIterable<Buffer> & { destroy(): void }, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > limit) {
      body.destroy()
      throw new Error(`response larger than ${limit} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
