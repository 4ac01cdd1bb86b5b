const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Milliseconds for "500ms", "30s", "10m", "1h", or a number of seconds. The schema has already checked the form. */
export function durationMs(value: string | number): number {
  if (typeof value === 'number') return Math.round(value * 1000)
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(value)
  if (!match) throw new Error(`bad duration ${JSON.stringify(value)}`)
  return Math.round(Number(match[1]) * UNIT_MS[match[2]!]!)
}
