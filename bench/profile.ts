// Summarizes a V8 CPU profile (`node --cpu-prof`, or BENCH_PROFILE=dir npm run bench): the
// functions with the most self time, and self time by where the code lives (a package, node's
// internals, jwtgate's own src/). Usage: npx tsx bench/profile.ts FILE.cpuprofile|DIR [N] [--skip S] [--grep RE]
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export interface Cost {
  name: string
  share: number
}

/** Self time per function (name, file:line) and per place, as shares of the busy (not idle) time, largest first. */
export function summarize(profile: Profile, skipS = 0): { functions: Cost[]; places: Cost[]; idle: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = selfTimes(profile, skipS)
  let total = 0
  for (const t of self.values()) total += t
  const functions = new Map<string, number>()
  const places = new Map<string, number>()
  let idle = 0
  for (const [id, time] of self) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') idle += time
  }
  const busy = total - idle
  for (const [id, time] of self) {
    const frame = byId.get(id)!.callFrame
    if (frame.functionName === '(idle)') continue
    const file = shortFile(frame.url)
    const name = `${frame.functionName || '(anonymous)'} ${file}${frame.url ? `:${frame.lineNumber + 1}` : ''}`
    functions.set(name, (functions.get(name) ?? 0) + time)
    const place = placeOf(frame)
    places.set(place, (places.get(place) ?? 0) + time)
  }
  const ranked = (m: Map<string, number>) => [...m].map(([name, t]) => ({ name, share: t / busy })).sort((x, y) => y.share - x.share)
  return { functions: ranked(functions), places: ranked(places), idle: idle / total }
}

/**
 * Total (self + callees) time of the functions whose name matches, as shares of the busy time;
 * a function on the stack twice counts once.
 */
export function inclusive(profile: Profile, pattern: RegExp, skipS = 0): Cost[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = selfTimes(profile, skipS)
  let total = 0
  let idle = 0
  for (const [id, t] of self) {
    total += t
    if (byId.get(id)!.callFrame.functionName === '(idle)') idle += t
  }
  const totals = new Map<string, number>()
  const onStack = new Map<string, number>()
  // Iterative depth-first walk; each node adds its self time to every matching name on its stack.
  const stack: { id: number; name?: string; entered: boolean }[] = [{ id: profile.nodes[0]!.id, entered: false }]
  while (stack.length) {
    const top = stack[stack.length - 1]!
    if (top.entered) {
      stack.pop()
      if (top.name) onStack.set(top.name, onStack.get(top.name)! - 1)
      continue
    }
    top.entered = true
    const node = byId.get(top.id)!
    const { functionName, url, lineNumber } = node.callFrame
    const name = `${functionName || '(anonymous)'} ${shortFile(url)}${url ? `:${lineNumber + 1}` : ''}`
    if (pattern.test(name)) {
      top.name = name
      onStack.set(name, (onStack.get(name) ?? 0) + 1)
    }
    const time = self.get(node.id) ?? 0
    if (time) for (const [n, depth] of onStack) if (depth > 0) totals.set(n, (totals.get(n) ?? 0) + time)
    for (const child of node.children ?? []) stack.push({ id: child, entered: false })
  }
  return [...totals].map(([name, t]) => ({ name, share: t / (total - idle) })).sort((x, y) => y.share - x.share)
}

/** Time per node id (µs), weighted by the time each sample stands for; samples in the first skipS seconds left out. */
function selfTimes(profile: Profile, skipS: number): Map<number, number> {
  const self = new Map<number, number>()
  let at = 0
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0
    if (at < skipS * 1e6) return
    const dt = Math.max(0, profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0)
    self.set(id, (self.get(id) ?? 0) + dt)
  })
  return self
}

function shortFile(url: string): string {
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length)
  const src = url.search(/\/(src|dist|bench)\//)
  if (src >= 0) return url.slice(src + 1)
  return url
}

function placeOf(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame
  if (!url) return functionName.startsWith('(') ? functionName : `(native) ${functionName}`
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  if (url.startsWith('node:')) return 'node: ' + url.slice(5).split('/')[0]
  const src = url.search(/\/(src|dist|bench)\//)
  return src >= 0
    ? 'jwtgate ' +
        url
          .slice(src + 1)
          .split('/')
          .slice(0, 2)
          .join('/')
    : url
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const args = process.argv.slice(2)
  const option = (name: string) => {
    const i = args.indexOf(name)
    return i < 0 ? undefined : args.splice(i, 2)[1]
  }
  const skip = Number(option('--skip') ?? 0)
  const grep = option('--grep')
  const [target, n = '15'] = args
  if (!target) {
    console.error('usage: bench/profile.ts FILE.cpuprofile|DIR [N] [--skip SECONDS] [--grep REGEXP: also the total time of the functions matching it]')
    process.exit(2)
  }
  // A directory (BENCH_PROFILE writes one per process): its largest profile, the main thread's.
  const file = statSync(target).isDirectory()
    ? readdirSync(target)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => path.join(target, f))
        .sort((x, y) => statSync(y).size - statSync(x).size)[0]!
    : target
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const { functions, places, idle } = summarize(profile, skip)
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)}%`
  console.log(`${file}${skip ? `, from ${skip} s on` : ''}: idle ${pct(idle).trim()}; the shares below are of the busy rest`)
  console.log('\nself time by function')
  for (const c of functions.slice(0, Number(n))) console.log(`${pct(c.share)}  ${c.name}`)
  console.log('\nself time by place')
  for (const c of places.slice(0, Number(n))) console.log(`${pct(c.share)}  ${c.name}`)
  if (grep) {
    console.log(`\ntotal time (self + callees) of functions matching /${grep}/`)
    for (const c of inclusive(profile, new RegExp(grep), skip).slice(0, Number(n))) console.log(`${pct(c.share)}  ${c.name}`)
  }
}
