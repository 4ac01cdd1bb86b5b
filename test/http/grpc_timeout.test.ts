// grpc-timeout values (PROTOCOL-HTTP2.md: at most 8 digits and a unit), read and written.
import t from 'tap'
import { grpcTimeoutMs, grpcTimeoutValue } from '../../src/http/grpc_status.js'

t.test('a deadline is written in the finest unit that fits 8 digits, rounded up, and reads back', async (t) => {
  t.equal(grpcTimeoutValue(500), '500m')
  t.equal(grpcTimeoutValue(3_600_000), '3600000m')
  t.equal(grpcTimeoutValue(0.4), '1m', 'never rounded down to no time at all')
  t.equal(grpcTimeoutValue(200_000_000), '200000S')
  t.equal(grpcTimeoutValue(99_999_999_000 + 1), '1666667M')
  t.equal(grpcTimeoutValue(1e13), '2777778H')
  t.equal(grpcTimeoutValue(1e30), '99999999H', 'past what grpc-timeout can say: its largest')
  for (const ms of [1, 500, 3_600_000, 200_000_000]) t.equal(grpcTimeoutMs(grpcTimeoutValue(ms)), ms)
})
