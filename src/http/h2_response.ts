// The HTTP/2 response the gateway writes to: node:http2's compatibility response (what fastify
// and the forwarder write to, as to an HTTP/1.1 ServerResponse), with two differences:
// - an answer can go out as one HEADERS frame that ends the stream, gRPC's Trailers-Only form
//   (its status in the only header block): the compatibility layer sends the head as soon as
//   writeHead() is called, so fastify's writeHead-then-end would be HEADERS, then an empty DATA
//   frame ending the stream, and a gRPC client would find no status in either;
// - `Connection` (HTTP/1.1's, which the gateway sets while it shuts down or after a refused body)
//   is not sent: HTTP/2 has no such header (RFC 9113 §8.2.2; the compatibility layer would warn on
//   the process's standard error the first time). What `Connection: close` means there, that the
//   rest of the request will not be read, is said the HTTP/2 way: once the answer is sent, the
//   stream is reset with NO_ERROR, which asks the client to stop sending (RFC 9113 §8.1), and the
//   stream does not stay open on a body nobody reads.
import { constants, Http2ServerResponse, type Http2ServerRequest } from 'node:http2'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'

const TRAILERS_ONLY = Symbol('jwtgate.trailersOnly')

export class GatewayH2Response extends Http2ServerResponse<Http2ServerRequest> {
  [TRAILERS_ONLY] = false
  private closeAfter = false

  override writeHead(statusCode: number, message?: string | OutgoingHttpHeaders | readonly string[], headers?: OutgoingHttpHeaders | readonly string[]): this {
    // The gateway writes header objects, never the array form.
    const fields = (typeof message === 'object' ? message : headers) as OutgoingHttpHeaders | undefined
    if (fields && 'connection' in fields) {
      if (fields.connection === 'close') this.closeStreamAfter()
      delete fields.connection
    }
    if (this[TRAILERS_ONLY] && !this.writableEnded) {
      // Kept until end(), which sends them with the end of the stream.
      this.statusCode = statusCode
      if (fields) for (const name of Object.keys(fields)) this.setHeader(name, fields[name] as string | string[])
      return this
    }
    return fields ? super.writeHead(statusCode, fields) : super.writeHead(statusCode)
  }

  /**
   * The head of a forwarded answer, given to the stream as it is. Its fields passed nghttp2's
   * checks on their way in and the forwarder's filters, and respond() checks them again; the
   * compatibility layer's writeHead would first check, trim and lower-case each one more time
   * (a few per cent of a forwarded call in a profile). The rare heads it must hold back or
   * rewrite (Trailers-Only, `Connection`) and any header set before go through writeHead.
   */
  writeForwardedHead(statusCode: number, fields: OutgoingHttpHeaders): void {
    const stream = this.stream
    if (this[TRAILERS_ONLY] || 'connection' in fields || this.getHeaderNames().length > 0 || this.headersSent || stream.destroyed || stream.closed) {
      this.writeHead(statusCode, fields)
      return
    }
    this.statusCode = statusCode
    fields[':status'] = statusCode
    // As the compatibility layer responds: trailers are asked for (its 'wantTrailers' listener
    // sends what addTrailers() gave), and a Date field added.
    stream.respond(fields, { waitForTrailers: true })
  }

  override setHeader(name: string, value: number | string | readonly string[]): this {
    if (name.toLowerCase() !== 'connection') super.setHeader(name, value)
    else if (value === 'close') this.closeStreamAfter()
    return this
  }

  private closeStreamAfter(): void {
    if (this.closeAfter) return
    this.closeAfter = true
    const stream = this.stream
    stream.once('finish', () => {
      if (!stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR)
    })
  }
}

/** Writes a forwarded answer's head: straight to the stream on HTTP/2 (GatewayH2Response.writeForwardedHead). */
export function writeForwardedHead(res: ServerResponse | Http2ServerResponse, statusCode: number, fields: OutgoingHttpHeaders): void {
  if (res instanceof GatewayH2Response) res.writeForwardedHead(statusCode, fields)
  else (res as ServerResponse).writeHead(statusCode, fields)
}

/**
 * The answer on `res` has no body: on HTTP/2 its head is held back so that ending the response
 * sends one HEADERS frame with END_STREAM. Nothing to do on HTTP/1.1, where the head and an
 * empty body are one message anyway.
 */
export function sendHeadWithEnd(res: ServerResponse | Http2ServerResponse): void {
  if (res instanceof GatewayH2Response) res[TRAILERS_ONLY] = true
}
