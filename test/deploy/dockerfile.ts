// A small reader for the project's Dockerfile, shared by the deploy tests. It understands what
// the Dockerfile uses (FROM … AS, WORKDIR, COPY [--from], RUN, ENV, USER, EXPOSE, exec-form
// ENTRYPOINT and CMD, line continuations, comments), not the whole Dockerfile syntax.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const DOCKERFILE = fileURLToPath(new URL('../../Dockerfile', import.meta.url))

export interface Instruction {
  op: string
  args: string
  line: number
}
export interface Stage {
  from: string
  name: string | undefined
  instructions: Instruction[]
}

export function parseDockerfile(text: string = readFileSync(DOCKERFILE, 'utf8')): Stage[] {
  const stages: Stage[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1
    let line = lines[i]!.trim()
    if (!line || line.startsWith('#')) continue
    // Continuations: a trailing backslash joins the next line; comment lines inside are dropped.
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = line.slice(0, -1)
      const next = lines[++i]!.trim()
      if (!next.startsWith('#')) line += ' ' + next
    }
    const m = /^(\S+)\s*(.*)$/.exec(line)!
    const op = m[1]!.toUpperCase()
    const args = m[2]!.trim()
    if (op === 'FROM') {
      const [from, as, name] = args.split(/\s+/)
      stages.push({ from: from!, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] })
      continue
    }
    if (!stages.length) throw new Error(`Dockerfile:${start}: ${op} before FROM`)
    stages.at(-1)!.instructions.push({ op, args, line: start })
  }
  return stages
}

/** The last instruction `op` of a stage (the one in force), if any. */
export function last(stage: Stage, op: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.op === op).at(-1)
}

/** ENTRYPOINT or CMD in exec form; throws on the shell form, under which signals miss node. */
export function execForm(stage: Stage, op: 'ENTRYPOINT' | 'CMD'): string[] {
  const ins = last(stage, op)
  if (!ins) return []
  const value: unknown = JSON.parse(ins.args)
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error(`Dockerfile:${ins.line}: ${op} is not a JSON array of strings`)
  return value as string[]
}

/** ENV lines of a stage, `KEY=value` form (several pairs per line allowed). */
export function env(stage: Stage): Record<string, string> {
  const out: Record<string, string> = {}
  for (const ins of stage.instructions.filter((i) => i.op === 'ENV')) {
    for (const pair of ins.args.split(/\s+/)) {
      const eq = pair.indexOf('=')
      if (eq < 1) throw new Error(`Dockerfile:${ins.line}: write ENV as KEY=value`)
      out[pair.slice(0, eq)] = pair.slice(eq + 1).replace(/^"(.*)"$/, '$1')
    }
  }
  return out
}

export interface Copy {
  from: string | undefined
  sources: string[]
  dest: string
  line: number
}

export function copies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.op === 'COPY' || i.op === 'ADD')
    .map((ins) => {
      if (ins.op === 'ADD') throw new Error(`Dockerfile:${ins.line}: use COPY, not ADD`)
      const words = ins.args.split(/\s+/)
      let from: string | undefined
      while (words[0]?.startsWith('--')) {
        const flag = words.shift()!
        if (flag.startsWith('--from=')) from = flag.slice('--from='.length)
        else if (!/^--(chown|chmod|link)(=|$)/.test(flag)) throw new Error(`Dockerfile:${ins.line}: unknown COPY flag ${flag}`)
      }
      if (words.length < 2) throw new Error(`Dockerfile:${ins.line}: COPY needs a source and a destination`)
      return { from, sources: words.slice(0, -1), dest: words.at(-1)!, line: ins.line }
    })
}

/** The runtime user's numeric uid (and gid), from the last stage's USER. */
export function runtimeUser(stages: Stage[] = parseDockerfile()): { uid: number; gid: number | undefined } | undefined {
  const user = last(stages.at(-1)!, 'USER')?.args
  const m = user ? /^(\d+)(?::(\d+))?$/.exec(user) : null
  return m ? { uid: Number(m[1]), gid: m[2] === undefined ? undefined : Number(m[2]) } : undefined
}
