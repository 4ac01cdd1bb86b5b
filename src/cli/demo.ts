// `npm run demo`: everything a newcomer needs to see jwtgate work, with nothing else installed.
// A dev issuer (fresh keys, JWKS on loopback), an echo upstream and the gateway with
// config/demo.yaml; then ready-to-paste curl commands. `--check` runs them itself and exits.
import { fileURLToPath } from 'node:url'
import { startDevIssuer } from '../devkit/dev_issuer.js'
import { startEchoUpstream } from '../devkit/echo_upstream.js'
import { startGrpcEcho } from '../devkit/grpc_echo.js'
import { grpcCall, GRPC_HELLO } from '../devkit/grpc_call.js'
import { startGateway, type RunningGateway } from '../server.js'

// GRPC_HELLO as printf writes it.
const GRPC_HELLO_PRINTF = [...GRPC_HELLO].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('')

const DEMO_POLICY = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url))

export async function runDemo({ check }: { check: boolean }): Promise<number> {
  const issuer = await startDevIssuer()
  const upstream = await startEchoUpstream()
  const grpcEcho = await startGrpcEcho()
  const env = {
    ...process.env,
    DEMO_ISSUER: issuer.url,
    DEMO_JWKS_URI: issuer.jwksUri,
    DEMO_UPSTREAM: upstream.url,
    DEMO_GRPC_UPSTREAM: grpcEcho.url,
  }
  let gateway: RunningGateway
  try {
    gateway = await startGateway({ policyFile: DEMO_POLICY, env, ...demoPorts(check, process.env) })
  } catch (err) {
    // A busy port: the issuer and the upstreams would keep the process alive, and it would hang.
    await upstream.close()
    await grpcEcho.close()
    await issuer.close()
    throw err
  }
  const user = issuer.sign({ sub: 'alice', aud: 'demo-api', roles: ['reader'] }, { expiresInSeconds: 3600 })
  const admin = issuer.sign({ sub: 'root', aud: 'demo-api', roles: ['admin'] }, { expiresInSeconds: 3600 })
  const stop = async () => {
    await gateway.close()
    await upstream.close()
    await grpcEcho.close()
    await issuer.close()
  }

  const examples = [
    { what: 'a valid token: 200, the upstream sees x-user-id: alice', path: '/api/orders/7', token: user, expect: 200 },
    { what: 'no token: 401 with WWW-Authenticate', path: '/api/orders/7', token: undefined, expect: 401 },
    { what: 'a valid token without the admin role: 403 insufficient_scope', path: '/admin/users', token: user, expect: 403 },
    { what: 'an admin token: 200', path: '/admin/users', token: admin, expect: 200 },
    { what: 'a public route needs no token: 200', path: '/public/hello', token: undefined, expect: 200 },
    {
      what: 'a path that escapes its route is resolved first: /public/../admin is /admin, so 401',
      path: '/public/%2e%2e/admin/users',
      token: undefined,
      expect: 401,
    },
  ]

  const grpcExamples = [
    { what: 'a gRPC call with a valid token: grpc-status 0, the message echoed, x-user-id: alice', token: user, expect: '0' },
    { what: 'a gRPC call without a token: grpc-status 16 (UNAUTHENTICATED), grpc-message missing_token', token: undefined, expect: '16' },
  ]

  if (check) {
    let failed = 0
    for (const e of examples) {
      const res = await fetch(gateway.url + e.path, { headers: e.token ? { authorization: `Bearer ${e.token}` } : {} })
      await res.arrayBuffer()
      const ok = res.status === e.expect
      if (!ok) failed++
      process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${res.status} ${e.path}  (${e.what})\n`)
    }
    for (const e of grpcExamples) {
      const res = await grpcCall(gateway.url, '/demo.Echo/Say', e.token)
      const ok = res.status === e.expect && (e.expect !== '0' || res.echoed)
      if (!ok) failed++
      process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} grpc-status ${res.status} /demo.Echo/Say  (${e.what})\n`)
    }
    await stop()
    process.stdout.write(`${examples.length + grpcExamples.length - failed} passed, ${failed} failed\n`)
    return failed ? 1 : 0
  }

  const lines = [
    '',
    `jwtgate demo: gateway ${gateway.url} (admin ${gateway.adminUrl}), dev issuer ${issuer.url}, echo upstream ${upstream.url}`,
    'policy: config/demo.yaml. Try these in another terminal (tokens are valid for an hour):',
    '',
  ]
  for (const e of examples) {
    lines.push(`# ${e.what}`)
    lines.push(`curl -si --path-as-is ${gateway.url}${e.path}${e.token ? ` -H 'Authorization: Bearer ${e.token}'` : ''}`)
    lines.push('')
  }
  for (const e of grpcExamples) {
    // One gRPC message (a 5-byte length prefix, then the bytes of a small message) over h2c;
    // curl -v shows the response headers and the trailers, where grpc-status comes.
    lines.push(`# ${e.what}`)
    lines.push(
      `printf '${GRPC_HELLO_PRINTF}' | curl -sv --http2-prior-knowledge ${gateway.url}/demo.Echo/Say -H 'content-type: application/grpc' -H 'te: trailers'${e.token ? ` -H 'Authorization: Bearer ${e.token}'` : ''} --data-binary @- -o /dev/null 2>&1 | grep -Ei '^< (grpc-|x-user|www-auth|HTTP/2)'`,
    )
    lines.push('')
  }
  lines.push('Ctrl-C stops the demo.', '')
  process.stdout.write(lines.join('\n'))
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await stop()
  return 0
}

/**
 * The proxy and admin ports: the policy's 8080 and 9901 unless DEMO_PORT / DEMO_ADMIN_PORT say
 * otherwise. DEMO_PORT alone moves the admin listener to any free port, so a second demo beside a
 * running one starts. --check must not collide with a demo already running: both free ports.
 */
export function demoPorts(check: boolean, env: NodeJS.ProcessEnv): { listen: { port?: number }; admin?: { port: number } } {
  if (check) return { listen: { port: 0 }, admin: { port: 0 } }
  const port = env.DEMO_PORT ? Number(env.DEMO_PORT) : undefined
  const adminPort = env.DEMO_ADMIN_PORT ? Number(env.DEMO_ADMIN_PORT) : port !== undefined ? 0 : undefined
  return { listen: { port }, ...(adminPort !== undefined ? { admin: { port: adminPort } } : {}) }
}
