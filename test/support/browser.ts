// A real browser for the tests: Debian's Chromium driven by playwright-core, with a fresh profile
// and everything that would reach beyond this machine turned off (without the background-
// networking flags Chromium tries to reach Google's services, and fails). Where Chromium is not
// installed the tests that need it are skipped with the reason, except under CI (CI=true), where
// that is a failure, as the Redis tests do (test/revocation/redis_server.ts).
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

interface Tap {
  test(name: string, fn: (t: any) => Promise<void>): unknown
  test(name: string, options: { skip?: string | boolean }, fn: (t: any) => Promise<void>): unknown
  teardown(fn: () => unknown): void
}

const CHROMIUM = '/usr/bin/chromium'

/** Why browser tests cannot run here, or undefined when they can. */
export const chromiumMissing: string | undefined = existsSync(CHROMIUM)
  ? undefined
  : `${CHROMIUM} is not installed (apt-get install chromium); .ci/run installs it`

/** t.test that needs Chromium: skipped with the reason when it is absent, failed under CI. */
export function browserTest(t: Tap, name: string, fn: (t: any) => Promise<void>): void {
  if (chromiumMissing && process.env.CI === 'true') {
    t.test(name, async (t) => {
      t.fail(`CI=true and ${chromiumMissing}`)
    })
    return
  }
  t.test(name, { skip: chromiumMissing ?? false }, fn)
}

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** A browser with a fresh profile of its own, closed (and its profile removed) at the test's end. */
export async function browser(t: Tap, viewport = { width: 1280, height: 900 }): Promise<BrowserContext> {
  const profile = mkdtempSync(path.join(tmpdir(), 'jwtgate-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport,
    timeout: 60_000,
  })
  t.teardown(async () => {
    await context.close()
    rmSync(profile, { recursive: true, force: true })
  })
  return context
}
