// Who the client is: the connection's address, or what trusted proxies wrote in X-Forwarded-For.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { BlockList } from 'node:net'
import { clientAddress } from '../../src/proxy/client_address.js'

function request(peer: string, xff?: string | string[]): IncomingMessage {
  return { socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } } as unknown as IncomingMessage
}

const trusted = new BlockList()
trusted.addSubnet('10.0.0.0', 8, 'ipv4')
trusted.addSubnet('fd00::', 8, 'ipv6')

t.test('without trusted proxies, the connection is the client, whatever X-Forwarded-For says', async (t) => {
  t.equal(clientAddress(request('203.0.113.7', '198.51.100.1'), null), '203.0.113.7')
  t.equal(clientAddress(request('203.0.113.7', '198.51.100.1'), trusted), '203.0.113.7', 'an untrusted peer: its header is its own word')
})

t.test('behind trusted proxies, the first address from the right that is not one', async (t) => {
  t.equal(clientAddress(request('10.0.0.2', '198.51.100.1'), trusted), '198.51.100.1')
  t.equal(clientAddress(request('10.0.0.2', '192.0.2.66, 198.51.100.1, 10.1.1.1'), trusted), '198.51.100.1', 'a forged left part is skipped')
  t.equal(clientAddress(request('10.0.0.2', ['192.0.2.66', '198.51.100.1']), trusted), '198.51.100.1', 'several headers are one chain')
  t.equal(clientAddress(request('fd00::1', '[2001:db8::5]'), trusted), '2001:db8::5', 'IPv6, bracketed too')
  t.equal(clientAddress(request('10.0.0.2', '10.0.0.3, 10.0.0.4'), trusted), '10.0.0.3', 'all trusted: the leftmost')
  t.equal(clientAddress(request('10.0.0.2'), trusted), '10.0.0.2', 'no header: the proxy itself')
})

t.test('a hop that is not an IP address ends the walk at the last trusted hop', async (t) => {
  t.equal(clientAddress(request('10.0.0.2', '198.51.100.1, not-an-ip'), trusted), '10.0.0.2')
  t.equal(clientAddress(request('10.0.0.2', '"x", 10.0.0.9'), trusted), '10.0.0.9')
  t.equal(clientAddress(request('10.0.0.2', '198.51.100.1:4711'), trusted), '10.0.0.2', 'a port is not an address')
})
