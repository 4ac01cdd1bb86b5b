// Runs the `jwtgate` command as a child process, the way users run it.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('../../bin/jwtgate.js', import.meta.url))

export interface CliRun { code: number | null; stdout: string; stderr: string }

/**
 * Asynchronous (unlike spawnSync) so servers living in the test process, a dev issuer or an
 * upstream, keep answering the child. The timeout only guards against a hang: a loaded
 * 2-core machine starts the command (tsx) in a few seconds.
 */
export function jwtgate(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d })
    child.stderr.on('data', (d: Buffer) => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`jwtgate ${args.join(' ')} did not finish: ${stderr}`)) }, timeoutMs)
    child.on('error', (err) => { clearTimeout(timer); reject(err) })
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}
