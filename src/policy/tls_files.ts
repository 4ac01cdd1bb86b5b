// Certificates and keys named in the policy (`listen.tls`, `upstreams.*.tls`), read and checked
// when the policy is loaded, so a bad or mismatched file is a policy problem with its place in
// the file: the gateway never starts with it, and a reload that brings one keeps the old policy
// (and the old certificate) in use.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { readBesidePolicy, type PolicyFiles } from './policy_files.js'
import type { DocPath, OnProblem } from './problems.js'

/** The listener's certificate chain and key, as the TLS server takes them. */
export interface ListenTls {
  cert: Buffer
  key: Buffer
  /** `client_certificates`: clients are asked for a certificate; `ca` verifies them, `required` refuses a handshake without one it verified. */
  clientCertificates: { ca: Buffer | null; required: boolean } | null
  /** sha256 of the files: a reload swaps the server's context only when it changed. */
  hash: string
}

/** An https upstream's trust anchors and client certificate; every field optional. */
export interface UpstreamTls {
  /** Replaces the system CAs for this upstream. */
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

export function compileListenTls(
  spec: { cert_file: string; key_file: string; client_certificates?: { ca_file?: string; required?: boolean } } | undefined,
  files: PolicyFiles,
  problem: OnProblem,
): ListenTls | null | undefined {
  if (!spec) return null
  const at: DocPath = ['listen', 'tls']
  const cert = readCertificates(files, spec.cert_file, [...at, 'cert_file'], problem)
  const key = readKey(files, spec.key_file, [...at, 'key_file'], problem)
  const clients = spec.client_certificates
  let clientCertificates: ListenTls['clientCertificates'] = null
  if (clients) {
    const ca = clients.ca_file === undefined ? null : readCertificates(files, clients.ca_file, [...at, 'client_certificates', 'ca_file'], problem)
    if (ca === undefined) return undefined
    // Without a CA, Node would verify client certificates against the public roots, which never sign them.
    if (clients.required && !ca) {
      problem([...at, 'client_certificates', 'required'], 'client_certificates.required needs the ca_file that signs the client certificates')
      return undefined
    }
    clientCertificates = { ca, required: clients.required ?? false }
  }
  if (!cert || !key || !keyMatches(cert, key, [...at, 'key_file'], problem)) return undefined
  const hash = createHash('sha256').update(cert).update(key)
  if (clientCertificates?.ca) hash.update(clientCertificates.ca)
  return { cert, key, clientCertificates, hash: hash.digest('hex') }
}

/**
 * The TLS server options `client_certificates` asks for: a certificate requested from every
 * client; refused in the handshake when required and not signed by the CA; otherwise the
 * connection goes on and the certificate counts for a binding as listen.tls says.
 */
export function clientCertificateOptions(tls: ListenTls): { requestCert?: boolean; rejectUnauthorized?: boolean; ca?: Buffer } {
  const clients = tls.clientCertificates
  if (!clients) return {}
  return { requestCert: true, rejectUnauthorized: clients.required, ...(clients.ca ? { ca: clients.ca } : {}) }
}

export function compileUpstreamTls(
  spec: { ca_file?: string; cert_file?: string; key_file?: string } | undefined,
  https: boolean,
  at: DocPath,
  files: PolicyFiles,
  problem: OnProblem,
): UpstreamTls | null | undefined {
  if (!spec) return null
  if (!https) {
    problem(at, 'tls is for https:// upstreams; this upstream url is http://')
    return undefined
  }
  if ((spec.cert_file === undefined) !== (spec.key_file === undefined)) {
    problem(at, 'a client certificate needs both cert_file and key_file')
    return undefined
  }
  // null: not configured; undefined: configured but unusable (the problem is said).
  const ca = spec.ca_file === undefined ? null : readCertificates(files, spec.ca_file, [...at, 'ca_file'], problem)
  const cert = spec.cert_file === undefined ? null : readCertificates(files, spec.cert_file, [...at, 'cert_file'], problem)
  const key = spec.key_file === undefined ? null : readKey(files, spec.key_file, [...at, 'key_file'], problem)
  if (ca === undefined || cert === undefined || key === undefined) return undefined
  if (cert && key && !keyMatches(cert, key, [...at, 'key_file'], problem)) return undefined
  return { ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) }
}

/** A PEM file whose first block is an X.509 certificate (a chain or a CA bundle may follow). */
function readCertificates(files: PolicyFiles, file: string, at: DocPath, problem: OnProblem): Buffer | undefined {
  const pem = readBesidePolicy(files, file, at, problem)
  if (!pem) return undefined
  try {
    new X509Certificate(pem)
    return pem
  } catch (err) {
    problem(at, `${file} is not a PEM certificate: ${(err as Error).message}`)
    return undefined
  }
}

function readKey(files: PolicyFiles, file: string, at: DocPath, problem: OnProblem): Buffer | undefined {
  const pem = readBesidePolicy(files, file, at, problem)
  if (!pem) return undefined
  try {
    createPrivateKey(pem)
    return pem
  } catch (err) {
    problem(at, `${file} is not a PEM private key: ${(err as Error).message}`)
    return undefined
  }
}

function keyMatches(cert: Buffer, key: Buffer, at: DocPath, problem: OnProblem): boolean {
  if (new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) return true
  problem(at, 'the private key does not belong to the certificate')
  return false
}
