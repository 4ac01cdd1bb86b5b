// Test certificates, made with the openssl command at test time (no key material lives in the
// repository): a CA, certificates it signs for 127.0.0.1/localhost, and self-signed ones.
// EC P-256 keys, which take milliseconds to generate.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

export interface CertFiles {
  certFile: string
  keyFile: string
  cert: Buffer
  key: Buffer
}

export interface TestPki {
  dir: string
  ca: CertFiles
  /** A certificate signed by the CA, for 127.0.0.1 and localhost, usable by servers and clients. */
  issue(name: string): CertFiles
  /** A self-signed certificate for 127.0.0.1 and localhost, which nothing trusts. */
  selfSigned(name: string): CertFiles
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
const SAN = 'subjectAltName=IP:127.0.0.1,DNS:localhost'

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

function files(dir: string, name: string): CertFiles {
  const certFile = path.join(dir, `${name}.crt`)
  const keyFile = path.join(dir, `${name}.key`)
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) }
}

export function testPki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'jwtgate-pki-'))
  openssl(
    [
      'req',
      '-x509',
      ...EC_KEY,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=jwtgate test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  )
  writeFileSync(path.join(dir, 'leaf.ext'), `${SAN}\nextendedKeyUsage=serverAuth,clientAuth\n`)
  return {
    dir,
    ca: files(dir, 'ca'),
    issue(name) {
      openssl(['req', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir)
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-out',
          `${name}.crt`,
          '-days',
          '2',
          '-extfile',
          'leaf.ext',
        ],
        dir,
      )
      return files(dir, name)
    },
    selfSigned(name) {
      openssl(['req', '-x509', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`, '-addext', SAN], dir)
      return files(dir, name)
    },
  }
}
