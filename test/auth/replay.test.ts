import t from 'tap'
import { MemoryProofReplay } from '../../src/auth/replay.js'
import { isDenial } from '../../src/http/denial.js'

t.test('a proof id is accepted once while it is remembered, and again once it expired', async (t) => {
  const replay = new MemoryProofReplay(10)
  const now = 1_000_000
  t.equal(replay.firstUse('k:1', 60_000, now), true)
  t.equal(replay.firstUse('k:1', 60_000, now + 59_999), false)
  t.equal(replay.firstUse('k:2', 60_000, now), true, 'another id')
  t.equal(replay.firstUse('k:1', 60_000, now + 60_000), true, 'past its window a proof is refused for its iat anyway')
})

t.test('full of live proofs: a new one is refused (503) rather than a live one forgotten; expired ones make room', async (t) => {
  const replay = new MemoryProofReplay(3)
  const now = 1_000_000
  for (const id of ['a', 'b', 'c']) t.equal(replay.firstUse(id, 10_000, now), true)
  const full = replay.firstUse('d', 10_000, now + 1)
  t.ok(isDenial(full) && full.reason === 'proof_replay_unavailable' && full.status === 503)
  t.equal(replay.firstUse('a', 10_000, now + 2), false, 'the remembered ones are still refused')
  t.equal(replay.firstUse('d', 10_000, now + 10_001), true, 'once they expired, there is room')
  t.equal(replay.size, 1)
})
