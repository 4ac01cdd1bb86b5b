// How far V8 lets a serving process's old generation grow past what its last full collection
// kept. V8 picks a factor after each full collection, up to 4 where the heap limit is 2 GB or
// more (V8's heap-controller, MaxGrowingFactor), which is any machine with 8 GB of memory and no
// container limit. A burst of first verifications (a restart in front of a busy service, the
// benchmark's priming of 10,000 tokens) leaves garbage that a collection in the middle of it
// counts as kept: the limit is then set to four times that, the old generation fills up to it
// with the requests' promoted garbage, and the process stays above 200 MB of RSS instead of
// 130-160, for good. Measured (RSS after the RS256 rows of `npm run bench`, and probes of two
// gateways primed at once then loaded):
// - V8's own factor: 138, 208, 211, 223 MB in four bench runs; 182-214 MB in six probes;
// - a factor of 2 (this): 146 and 161 MB; 153-175 MB in the probes; CPU as with V8's own;
// - a factor of 1.5: 134-139 MB in four runs, but `auth: none`'s CPU per request ×0.96-1.17 the
//   floor's against ×0.69-0.79 with V8's own (a small live heap collected too often).
// --heap-growing-percent is not among the V8 options NODE_OPTIONS accepts, so the process sets
// it itself, before serving; a value given on node's command line is left alone.
import { setFlagsFromString } from 'node:v8'

export const HEAP_GROWING_PERCENT = 100

/** Sets the factor unless node's command line set one; whether it did. */
export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) return false
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
  return true
}
