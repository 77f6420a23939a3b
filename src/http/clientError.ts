// Requests node's HTTP parser refuses before express sees them (request line or headers
// over the limit, a bad Content-Length, Content-Length with Transfer-Encoding, NUL in the
// target, an unknown method, a request that timed out) still get the spec's ErrorResponse,
// with ids, and `Connection: close`: node's default answers with an empty body.
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ApiError } from '../errors';
import { errorBody } from './errorBody';
import { newRequestId, newTraceId } from './tracing';

const REASONS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request line or headers are larger than the server accepts'],
  HPE_INVALID_METHOD: [400, 'Unknown HTTP method'],
  HPE_INVALID_CONTENT_LENGTH: [400, 'Invalid Content-Length header'],
  HPE_UNEXPECTED_CONTENT_LENGTH: [400, 'Content-Length together with Transfer-Encoding is not allowed'],
  HPE_INVALID_TRANSFER_ENCODING: [400, 'Invalid Transfer-Encoding header'],
  HPE_INVALID_URL: [400, 'Malformed request target'],
  HPE_INVALID_HEADER_TOKEN: [400, 'Malformed header'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Chunk extensions are larger than the server accepts'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request was not received in time'],
};

/** The ErrorResponse for a parser error (status, raw HTTP/1.1 bytes), or undefined when
 *  nothing may be written. */
export function parserErrorResponse(code: string | undefined): { status: number; raw: string; requestId: string } {
  const [status, message] = REASONS[code ?? ''] ?? [400, 'Malformed HTTP request'];
  const requestId = newRequestId();
  const traceId = newTraceId();
  const err = new ApiError('INVALID_REQUEST', `${message} (${code ?? 'parse error'})`, undefined, status);
  const body = JSON.stringify(errorBody(err, requestId, traceId));
  const raw = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n`
    + 'Content-Type: application/json\r\n'
    + `Content-Length: ${Buffer.byteLength(body)}\r\n`
    + `X-Request-Id: ${requestId}\r\n`
    + `X-Cycles-Trace-Id: ${traceId}\r\n`
    + 'Connection: close\r\n\r\n'
    + body;
  return { status, raw, requestId };
}

export function installClientErrorHandler(server: Server, log: Logger, plane: string): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // A response of this connection is still being written: another would corrupt it.
    const busy = Boolean((socket as Socket & { _httpMessage?: unknown })._httpMessage);
    if (err.code === 'ECONNRESET' || !socket.writable || busy) {
      socket.destroy();
      return;
    }
    const { status, raw, requestId } = parserErrorResponse(err.code);
    log.info({ plane, status, code: err.code, request_id: requestId }, 'unparseable request');
    socket.end(raw);
    // the peer may keep sending (an oversized header block); do not wait on it forever
    setTimeout(() => socket.destroy(), 1000).unref();
  });
}
