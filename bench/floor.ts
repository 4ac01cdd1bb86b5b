// The Node proxy floor: fastify + @fastify/reply-from forwarding everything to one upstream,
// no auth, no logging, the same undici pool settings as jwtgate. Usage: floor.ts <upstream-url>.
// Prints {"url": ...} once listening; exits when its stdin closes.
import Fastify from 'fastify'
import replyFrom from '@fastify/reply-from'

const upstream = process.argv[2]
if (!upstream) throw new Error('usage: floor.ts <upstream-url>')
const app = Fastify({ logger: false })
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
await app.register(replyFrom, {
  base: upstream,
  undici: { connections: 128, pipelining: 1 },
  disableCache: true,
  disableRequestLogging: true,
})
app.all('*', (request, reply) => reply.from(request.raw.url))
const address = await app.listen({ host: '127.0.0.1', port: 0 })
console.log(JSON.stringify({ url: address }))
process.stdin.on('close', () => process.exit(0)).resume()
// An exit rather than death by signal, so `--cpu-prof` (BENCH_PROFILE) writes its profile.
process.on('SIGTERM', () => process.exit(0))
