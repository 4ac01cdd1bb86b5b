// What ends an exchange whose client went away, for either forwarder (undici's for HTTP/1.1
// upstreams, node:http2's for h2c/h2): a module of its own, which both can import.

/** The client went away before the upstream's answer was written. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection')
    this.name = 'ClientGone'
  }
}
