// The load generator's HTTP/1.1 client: one keep-alive connection per closed-loop client,
// one request in flight per connection, responses framed by Content-Length (every response
// of our server and of the bare baseline is). It exists because the load generator shares
// the 2 measured cores with the server and Redis: a general-purpose client (undici: body
// streams, promises per chunk, header objects) spent 36–76 µs of CPU per request there;
// this one writes each request with one write() and parses just the status line and
// Content-Length, the way wrk-style tools do. Anything it does not understand (chunked
// bodies, a connection closed mid-request, a timeout) fails the request loudly.
import { connect, type Socket } from 'node:net';
import type { ChildProcess } from 'node:child_process';

export interface Reply { status: number; body: string }

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  /** false: a 2xx body is skipped without decoding (other statuses are always decoded) */
  wantBody: boolean;
  startedAt: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CHUNKED = /\r\ntransfer-encoding:[^\r]*chunked/i;

class Connection {
  private socket: Socket | undefined;
  private buf: Buffer | undefined;
  private pending: Pending | undefined;

  constructor(private readonly host: string, private readonly port: number) {}

  send(head: string, body: string | undefined, wantBody: boolean): Promise<Reply> {
    if (this.pending) return Promise.reject(new Error('a request is already in flight on this connection'));
    const socket = this.socket ?? this.open();
    return new Promise<Reply>((resolve, reject) => {
      this.pending = { resolve, reject, wantBody, startedAt: performance.now() };
      socket.write(body === undefined ? head : head + body);
    });
  }

  /** Fails a request that has waited longer than `timeoutMs` (checked by the client's timer). */
  expire(now: number, timeoutMs: number): void {
    if (this.pending && now - this.pending.startedAt > timeoutMs) this.fail(new Error(`no response within ${timeoutMs} ms`));
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private open(): Socket {
    const s = connect({ host: this.host, port: this.port, noDelay: true });
    // Events of a socket already given up on (fail() replaced it) must not touch the next one.
    s.on('data', (chunk: Buffer) => { if (this.socket === s) this.onData(chunk); });
    s.on('error', (e) => { if (this.socket === s) this.fail(e); });
    s.on('close', () => { if (this.socket === s) this.fail(new Error('connection closed')); });
    this.socket = s;
    return s;
  }

  private fail(e: Error): void {
    this.socket?.destroy();
    this.socket = undefined;
    this.buf = undefined;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }

  private onData(chunk: Buffer): void {
    const buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    const p = this.pending;
    if (!p) return this.fail(new Error('data without a request in flight'));
    const headerEnd = buf.indexOf(HEADER_END);
    if (headerEnd < 0) { this.buf = buf; return; }
    const head = buf.toString('latin1', 0, headerEnd);
    if (CHUNKED.test(head)) return this.fail(new Error('chunked responses are not supported'));
    const len = CONTENT_LENGTH.exec(head);
    if (!len) return this.fail(new Error(`response without Content-Length: ${head.slice(0, 80)}`));
    const bodyStart = headerEnd + HEADER_END.length;
    const total = bodyStart + Number(len[1]);
    if (buf.length < total) { this.buf = buf; return; }
    if (buf.length > total) return this.fail(new Error('bytes after the response (nothing else was asked)'));
    this.buf = undefined;
    this.pending = undefined;
    const status = Number(head.slice(9, 12));
    const body = p.wantBody || status >= 300 ? buf.toString('utf8', bodyStart, total) : '';
    p.resolve({ status, body });
  }
}

/** `connections` keep-alive connections to `baseUrl`; request(i, ...) uses connection i. */
export function makeClient(baseUrl: string, connections: number, timeoutMs = 30_000) {
  const url = new URL(baseUrl);
  const conns = Array.from({ length: connections }, () => new Connection(url.hostname, Number(url.port)));
  const hostLine = `Host: ${url.host}\r\n`;
  const watchdog = setInterval(() => { const now = performance.now(); for (const c of conns) c.expire(now, timeoutMs); }, 1000);
  watchdog.unref();
  return {
    /** headers: pre-rendered "Name: value\r\n" lines (see headerLines). A 2xx body is only
     *  decoded when `wantBody`. */
    request(conn: number, method: string, path: string, headers: string, body?: string, wantBody = true): Promise<Reply> {
      const head = body === undefined
        ? `${method} ${path} HTTP/1.1\r\n${hostLine}${headers}\r\n`
        : `${method} ${path} HTTP/1.1\r\n${hostLine}${headers}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
      return conns[conn].send(head, body, wantBody);
    },
    close(): void {
      clearInterval(watchdog);
      for (const c of conns) c.close();
    },
  };
}

/** Header lines for makeClient().request. */
export function headerLines(headers: Record<string, string>): string {
  return Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
}

/** Polls `url` until it answers 200; fails early when the server child exits. */
export async function waitReady(url: string, timeoutMs: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`child exited (${child.exitCode}): ${log()}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not ready after ${timeoutMs} ms: ${url}\n${log()}`);
}
