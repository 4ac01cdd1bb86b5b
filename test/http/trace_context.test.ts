// W3C Trace Context as the gateway reads it: which traceparent values are continued, which are
// dropped, and what is left of a tracestate.
import t from 'tap'
import { checkedTraceState, incomingTraceContext } from '../../src/http/trace_context.js'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT = '00f067aa0ba902b7'

t.test('a valid traceparent is read, and rewritten the same', async (t) => {
  const header = `00-${TRACE}-${PARENT}-01`
  t.same(incomingTraceContext(header, undefined), { traceId: TRACE, parentId: PARENT, flags: '01', traceparent: header, tracestate: undefined })
  t.equal(incomingTraceContext(` ${header} `, undefined)?.traceparent, header, 'spaces around it are dropped')
  t.equal(incomingTraceContext(`00-${TRACE}-${PARENT}-00`, undefined)?.flags, '00', 'not sampled is kept')
  // §3.2.4: a later version may carry more fields; it is read as version 00.
  t.equal(incomingTraceContext(`01-${TRACE}-${PARENT}-01-future-field`, undefined)?.traceparent, header)
})

t.test('an invalid traceparent is no context at all', async (t) => {
  for (const bad of [
    '',
    'garbage',
    `ff-${TRACE}-${PARENT}-01`, // version ff is forbidden
    `00-${TRACE.toUpperCase()}-${PARENT}-01`, // lower case only
    `00-${'0'.repeat(32)}-${PARENT}-01`, // all-zero trace id
    `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero parent id
    `00-${TRACE}-${PARENT}-01-extra`, // version 00 has nothing after the flags
    `00-${TRACE.slice(1)}-${PARENT}-01`,
    `00-${TRACE}-${PARENT}-1`,
    `00-${TRACE}-${PARENT}-01, 00-${TRACE}-${PARENT}-01`, // two headers, as Node joins them
    `0-${TRACE}-${PARENT}-01`,
  ]) {
    t.equal(incomingTraceContext(bad, 'vendor=x'), undefined, JSON.stringify(bad))
  }
  t.equal(incomingTraceContext([`00-${TRACE}-${PARENT}-01`], undefined), undefined, 'not a single string')
  t.equal(incomingTraceContext(undefined, 'vendor=x'), undefined, 'a tracestate alone is nothing')
})

t.test('tracestate: well-formed entries pass, a malformed list is dropped whole', async (t) => {
  t.equal(checkedTraceState('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'), 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7')
  t.equal(checkedTraceState(' a=1 , , b=2 '), 'a=1,b=2', 'spaces and empty entries dropped')
  t.equal(checkedTraceState(['a=1', 'b=2']), 'a=1,b=2', 'several headers are one list')
  t.equal(checkedTraceState('tenant1@sys=value'), 'tenant1@sys=value', 'multi-tenant keys')
  t.equal(checkedTraceState('k=v w'), 'k=v w', 'a space inside a value')
  for (const bad of ['Upper=1', 'a=1,a=2', 'a', 'a=', 'a=b=c', 'a=x\u00e9', '1abc=x', `a=${'x'.repeat(257)}`, 'a=1,b']) {
    t.equal(checkedTraceState(bad), undefined, JSON.stringify(bad))
  }
  t.equal(checkedTraceState(''), undefined)
  const many = Array.from({ length: 40 }, (_, i) => `k${i}=v`).join(',')
  t.equal(checkedTraceState(many)!.split(',').length, 32, 'at most 32 entries')
  const long = Array.from({ length: 10 }, (_, i) => `k${i}=${'v'.repeat(100)}`).join(',')
  t.ok(checkedTraceState(long)!.length <= 512, 'at most 512 characters, whole entries')
  t.equal(checkedTraceState('x'.repeat(5000)), undefined, 'an overlong header is not parsed')
})

t.test('a context carries its checked tracestate', async (t) => {
  t.equal(incomingTraceContext(`00-${TRACE}-${PARENT}-01`, 'a=1,b=2')?.tracestate, 'a=1,b=2')
  t.equal(incomingTraceContext(`00-${TRACE}-${PARENT}-01`, 'a=1,A=2')?.tracestate, undefined)
})
