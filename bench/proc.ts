// What the benchmark reads about a process from /proc (Linux only), and CPU pinning via taskset.
import { execFileSync } from 'node:child_process'
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'

let ticksPerSecond: number | undefined

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** User + system CPU time the process has used so far, in µs (resolution: one clock tick, 10 ms). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / clockTicks()
}

/** The process and its descendants (a cluster's primary and workers), from /proc's parent pids. */
export function processTree(pid: number): number[] {
  const parents = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)])
  }
  const out = [pid]
  for (let i = 0; i < out.length; i++) out.push(...(parents.get(out[i]!) ?? []))
  return out
}

/** The process's peak resident set size so far (VmHWM), in bytes. */
export function peakRssBytes(pid: number): number {
  return statusKb(pid, 'VmHWM') * 1024
}

/** The process's resident set size now (VmRSS), in bytes. */
export function rssBytes(pid: number): number {
  return statusKb(pid, 'VmRSS') * 1024
}

function statusKb(pid: number, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match ? Number(match[1]) : Number.NaN
}

/** The full path of an executable on PATH, or undefined. */
export function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue
    const candidate = path.join(dir, command)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

/** Pins every thread of a running process to one CPU; false when that did not work. */
export function pin(pid: number, cpu: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore', timeout: 5000 })
    return true
  } catch {
    return false
  }
}

/** The machine's CPU time so far, in clock ticks: all of it, and the part stolen by the hypervisor. */
export function machineTicks(): { total: number; steal: number } {
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 }
}

/** The `ENV NAME=value` lines of the Dockerfile's last stage: what the image runs jwtgate with. */
function dockerfileEnv(root: string): Record<string, string> {
  const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8')
  const lastStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))
  const env: Record<string, string> = {}
  for (const [, name, value] of lastStage.matchAll(/^ENV ([A-Z_][A-Z0-9_]*)=(.*)$/gm)) env[name!] = value!.replace(/^"(.*)"$/, '$1')
  return env
}

/**
 * The environment the image sets besides NODE_OPTIONS: what the gateway runs with in production,
 * e.g. LD_PRELOAD (its allocator). BENCH_IMAGE_ENV=0: none. LD_PRELOAD is left out when this
 * machine lacks a library it names (missingPreloads; the dynamic loader would only complain and
 * go on without it).
 */
export function imageEnvironment(root: string): Record<string, string> {
  if (process.env.BENCH_IMAGE_ENV === '0') return {}
  const { NODE_OPTIONS: _, ...env } = dockerfileEnv(root)
  if (missingPreloads(root).length > 0) delete env.LD_PRELOAD
  return env
}

/** The image's preloaded libraries this machine lacks (the bench says so: its figures are not the image's). */
export function missingPreloads(root: string): string[] {
  return (dockerfileEnv(root).LD_PRELOAD ?? '').split(/[\s:]+/).filter((lib) => lib && !loadable(lib))
}

/** Whether the dynamic loader finds a library: a path that exists, or a name in ldconfig's cache. */
function loadable(library: string): boolean {
  if (library.includes('/')) {
    try {
      accessSync(library, constants.R_OK)
      return true
    } catch {
      return false
    }
  }
  try {
    const cache = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', timeout: 5000, env: { PATH: '/sbin:/usr/sbin:/bin:/usr/bin' } })
    return cache.split('\n').some((line) => line.trim().startsWith(`${library} `))
  } catch {
    return false
  }
}

/** The Node options the image runs jwtgate with: its Dockerfile's NODE_OPTIONS. */
export function imageNodeOptions(root: string): string {
  return dockerfileEnv(root).NODE_OPTIONS ?? ''
}
