// The express peer of the benchmark: express + express-jwt (jsonwebtoken, a static public key)
// + http-proxy-middleware with a keep-alive agent, a typical Node JWT gateway. Plain JavaScript,
// not type-checked: its packages are not dependencies of jwtgate, but of the bench (package.json here).
// Usage: server.mjs <upstream-url> <public-key.pem> <issuer> <audience>
import { readFileSync } from 'node:fs'
import { Agent } from 'node:http'
import express from 'express'
import { expressjwt } from 'express-jwt'
import { createProxyMiddleware } from 'http-proxy-middleware'

const [upstream, keyFile, issuer, audience] = process.argv.slice(2)
const app = express()
app.disable('x-powered-by')
app.use(expressjwt({ secret: readFileSync(keyFile), algorithms: ['RS256'], issuer, audience }))
app.use(
  createProxyMiddleware({
    target: upstream,
    agent: new Agent({ keepAlive: true, maxSockets: 128 }),
    xfwd: true,
    on: {
      proxyReq: (proxyReq, req) => {
        proxyReq.removeHeader('authorization')
        proxyReq.setHeader('x-user-id', String(req.auth.sub))
      },
    },
  }),
)
app.use((err, _req, res, _next) => res.status(err.status ?? 500).json({ error: err.code ?? 'error' }))
const server = app.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })))
process.stdin.on('close', () => process.exit(0)).resume()
process.on('SIGTERM', () => process.exit(0))
